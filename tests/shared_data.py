"""Where the project's shared test data lives (../shared/data beside the checkout).

CI lays a copy of shared/ beside the clone; a developer's checkout has it beside the
repository too. TAMGA_SHARED_DATA overrides both.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def shared_data() -> Path:
    override = os.environ.get("TAMGA_SHARED_DATA")
    candidates = [Path(override)] if override else []
    candidates += [REPO.parent / "shared" / "data", Path("/work/shared/data")]
    for candidate in candidates:
        if (candidate / "codes").is_dir():
            return candidate
    raise FileNotFoundError(
        "shared test data not found: put shared/ beside the checkout or set TAMGA_SHARED_DATA"
    )


SHARED_DATA = shared_data()
