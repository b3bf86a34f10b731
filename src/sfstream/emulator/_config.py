"""The emulator's settings, and the small context its HTTP handlers share."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from sfstream.emulator._clock import Clock
from sfstream.emulator._faults import FaultQueue
from sfstream.emulator._log import DAY
from sfstream.emulator._state import OrgState

if TYPE_CHECKING:
    from sfstream.emulator._jwt import PublicKey

__all__ = [
    "CURRENT_API_VERSION",
    "DEFAULT_CONSUMER_KEY",
    "DEFAULT_CONSUMER_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_REFRESH_TOKEN",
    "DEFAULT_USERNAME",
    "Context",
    "EmulatorConfig",
    "parse_version",
]

#: The API version the emulator presents as current (Summer '26), used in error strings.
CURRENT_API_VERSION: Final = "67.0"
#: The oldest ``/cometd/<version>`` accepted, as on Salesforce today.
MIN_COMETD_VERSION: Final = 37.0

# Well-known demo credentials: the emulator is a local test double, these are not secrets of
# any real system. Override them to test your own configuration handling.
#: The connected app's consumer key (``client_id``) unless told otherwise.
DEFAULT_CONSUMER_KEY: Final = "3MVG9sfstreamEmulatorConsumerKey"
#: The connected app's consumer secret (``client_secret``) unless told otherwise.
DEFAULT_CONSUMER_SECRET: Final = "sfstream-emulator-consumer-secret"  # noqa: S105
#: The org's user unless told otherwise.
DEFAULT_USERNAME: Final = "user@example.com"
#: That user's password unless told otherwise.
DEFAULT_PASSWORD: Final = "password"  # noqa: S105
#: A refresh token the org accepts from the start unless told otherwise.
DEFAULT_REFRESH_TOKEN: Final = "5Aep861sfstreamEmulatorRefreshToken"  # noqa: S105

_VERSION_RE: Final = re.compile(r"^(\d{1,3})(?:\.(\d{1,2}))?$")


def parse_version(text: str) -> float | None:
    """``"45.0"`` → 45.0; anything that is not an API version → None."""
    match = _VERSION_RE.match(text)
    if match is None:
        return None
    return float(f"{match.group(1)}.{match.group(2) or 0}")


@dataclass(frozen=True)
class EmulatorConfig:
    """Every option of the emulator. Secrets never appear in the repr."""

    host: str = "127.0.0.1"
    port: int = 0
    #: The host name put in URLs (login, instance); default: ``host``.
    public_host: str | None = None
    consumer_key: str = DEFAULT_CONSUMER_KEY
    consumer_secret: str = field(default=DEFAULT_CONSUMER_SECRET, repr=False)
    username: str = DEFAULT_USERNAME
    password: str = field(default=DEFAULT_PASSWORD, repr=False)
    #: Appended to the password by clients when set, as Salesforce's security token.
    security_token: str = field(default="", repr=False)
    #: A refresh token the org accepts from the start (None: only issued ones).
    refresh_token: str | None = field(default=DEFAULT_REFRESH_TOKEN, repr=False)
    refresh_token_rotation: bool = False
    client_credentials: bool = True
    jwt_key: PublicKey | None = field(default=None, repr=False)
    api_version: str = CURRENT_API_VERSION
    hold_time: float = 110.0
    session_expiry: float = 40.0
    retention: float = DAY
    high_volume_retention: float = 3 * DAY
    max_batch: int = 10_000
    max_request_size: int = 32_768
    require_cookie: bool = True
    #: Seconds an access token stays valid (None: until revoked, as with a long session timeout).
    token_lifetime: float | None = None
    admin: bool = True

    def __post_init__(self) -> None:
        # (written so that NaN fails every check: it compares false with everything)
        if not (0 <= self.hold_time < math.inf and 0 < self.session_expiry < math.inf):
            raise ValueError("hold_time must be >= 0 and session_expiry > 0, in seconds")
        if not (self.retention > 0 and self.high_volume_retention > 0):
            raise ValueError("retention periods must be positive")
        if self.token_lifetime is not None and not self.token_lifetime > 0:
            raise ValueError("token_lifetime must be positive (None: until revoked)")
        if self.max_batch < 1 or self.max_request_size < 1:
            raise ValueError("max_batch and max_request_size must be positive")
        if parse_version(self.api_version) is None:
            raise ValueError(f"invalid API version {self.api_version!r}")

    @property
    def advice_timeout(self) -> int:
        """The ``advice.timeout`` of connect replies, in milliseconds."""
        return round(self.hold_time * 1000)


@dataclass(eq=False)
class Context:
    """What every handler needs: settings, the org, the clock, the armed faults, the URLs."""

    config: EmulatorConfig
    state: OrgState
    clock: Clock
    faults: FaultQueue
    base_url: str = ""
    primary_user_id: str = ""

    def now(self) -> float:
        return self.clock.time()
