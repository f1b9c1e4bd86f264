"""Chart data service for TradingView Lightweight Charts."""

__version__ = "0.1.0"
