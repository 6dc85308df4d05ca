"""Generated from proto/schedd/v1 by scripts/gen_protos.py; do not edit."""
