"""Signal analysis shared by the gateway's packagers and the cloud emulators."""
