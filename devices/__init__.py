"""Devices: one file per transport (local.py, ssh.py, adb.py) on the base in base.py."""
