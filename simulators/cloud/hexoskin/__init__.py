"""The Hexoskin API emulator (issue 4): authentication first; resources follow."""
