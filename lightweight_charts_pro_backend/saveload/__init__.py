"""The TradingView save/load REST API (``charts_storage_url``): saved layouts and templates."""
