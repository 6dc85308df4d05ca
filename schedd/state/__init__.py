"""The replicated state machine: ``apply`` (pure: command + state view -> mutations + result),
the LMDB key layout, the LMDB store that executes mutations, and the disk seam.
"""
