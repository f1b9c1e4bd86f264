from ..security.conftest import app_client

__all__ = ["app_client"]
