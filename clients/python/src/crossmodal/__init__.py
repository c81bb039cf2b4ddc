"""Python client for the crossmodal server: `CrossModalClient` (blocking) and `AsyncCrossModalClient`."""

import pkgutil

# crossmodal.v1 (the generated stubs) is installed by the crossmodal-protos distribution, which may sit in
# another sys.path entry (editable installs): look for the package's other portions there too, before the
# client's modules import the stubs.
__path__ = pkgutil.extend_path(__path__, __name__)

from crossmodal.client import (
    AsyncCrossModalClient,
    CrossModalClient,
    Security,
    image_item,
    make_item,
    text_item,
)

__all__ = ["AsyncCrossModalClient", "CrossModalClient", "Security", "image_item", "make_item", "text_item"]
