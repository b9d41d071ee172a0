"""The dashboard: TensorBoard in-process behind a login; each user sees the runs they may view."""

from robustai.dashboard.auth import ACCESS_LOGGER, AuthLayer
from robustai.dashboard.filtering import GrantFilteredProvider, Identity
from robustai.dashboard.server import DashboardServer, build_tensorboard_app, open_access_log

__all__ = [
    "ACCESS_LOGGER",
    "AuthLayer",
    "DashboardServer",
    "GrantFilteredProvider",
    "Identity",
    "build_tensorboard_app",
    "open_access_log",
]
