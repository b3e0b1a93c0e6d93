"""The toy payload: what a grant says of the after-state."""

from __future__ import annotations

from trustwatch.frozen import frozen


@frozen(slots=True)
class Grant:
    """A member granted a role (the role is the change's identity). Produced by `Grant`."""

    member: str
