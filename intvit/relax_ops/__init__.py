"""The Relax operator layer (integer kernels as ``call_tir``, see ``emit``) and graph builders."""
