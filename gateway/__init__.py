"""wearable-gateway: cardiac devices to their vendors' clouds."""

__version__ = "0.1.0"
