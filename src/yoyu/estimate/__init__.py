"""Bytes per component per device for llama.cpp-family engines: pure functions."""
