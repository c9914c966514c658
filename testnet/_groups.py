"""The product-group table a testnet's genesis carries: the groups the Union marks, with
their layouts as ../shared/DOMAIN.md ("Code layouts by product group") describes them.

The table is data (product_groups.json beside this file), so a testnet can be given
another one without touching code, as a real chain's regulators would agree on theirs.
"""

from __future__ import annotations

import json
from importlib import resources

from ledger import ProductGroup, groups_from_json

PRODUCT_GROUPS_FILE = "product_groups.json"
# The group of the testnet's demonstration GTIN (a real code from shared/data/codes/valid.tsv,
# printed as 01 + 21 (13) + 93 like packaged water), whose goods need no attribute.
DEMO_GROUP = "water"
DEMO_TNVED = "2201"  # waters, unsweetened


def product_groups() -> tuple[ProductGroup, ...]:
    """The groups of product_groups.json, checked as genesis checks them."""
    text = resources.files(__package__).joinpath(PRODUCT_GROUPS_FILE).read_text(encoding="utf-8")
    return groups_from_json(json.loads(text)["product_groups"])
