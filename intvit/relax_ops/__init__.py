"""The Relax operator layer (integer kernels as ``call_tir`` via ``emit_te``) and graph builders."""
