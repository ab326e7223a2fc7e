"""Device simulators and cloud emulators for wearable-gateway."""
