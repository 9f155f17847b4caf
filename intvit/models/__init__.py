"""Float models (timm) and the built-in digits data they are trained and calibrated on."""
