"""The demo: a page drawing one chart with the real Lightweight Charts library, and synthetic data
to show on it (``charts-backend demo``)."""
