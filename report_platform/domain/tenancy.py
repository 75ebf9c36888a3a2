"""Organisations, workspaces, campaigns, Aegis workflows and numbers.

The demo tenancy is fixed in code so that generated data, tests and demo reports agree on names.
A deployment may describe its own tenancy in `$REPORT_PLATFORM_HOME/tenancy.yaml` (same shape as
`Tenancy.to_dict()`); `load_tenancy` prefers that file when it exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

CampaignKind = Literal["core", "byop", "engage", "10dlc"]
WorkflowTier = Literal["lite", "etl"]
# The campaigns a report filter names: "core" (voice calls, an SMS message's Core campaign) and
# "engage" (an SMS message's Engage campaign).
CAMPAIGN_KINDS: dict[str, tuple[CampaignKind, ...]] = {"core": ("core", "byop"), "engage": ("engage",)}


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    kind: CampaignKind
    numbers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workflow:
    name: str
    tier: WorkflowTier


@dataclass(frozen=True)
class Workspace:
    id: str
    organization_id: str
    name: str
    campaigns: tuple[Campaign, ...]
    workflows: tuple[Workflow, ...]
    protect_numbers: int = 0
    weight: float = 1.0  # share of the organisation's traffic, for the generator

    def campaigns_of(self, *kinds: CampaignKind) -> list[Campaign]:
        return [c for c in self.campaigns if c.kind in kinds]


@dataclass(frozen=True)
class Organization:
    id: str
    name: str
    workspaces: tuple[Workspace, ...]


@dataclass(frozen=True)
class Tenancy:
    organizations: tuple[Organization, ...] = field(default_factory=tuple)

    def workspaces(self) -> Iterator[Workspace]:
        for org in self.organizations:
            yield from org.workspaces

    def workspace(self, workspace_id: str) -> Workspace:
        for ws in self.workspaces():
            if ws.id == workspace_id:
                return ws
        raise KeyError(f"unknown workspace {workspace_id!r}")

    def organization(self, organization_id: str) -> Organization:
        for org in self.organizations:
            if org.id == organization_id:
                return org
        raise KeyError(f"unknown organization {organization_id!r}")

    def workspace_ids(self) -> dict[str, frozenset[str]]:
        """Organisation id -> its workspace ids."""
        return {o.id: frozenset(w.id for w in o.workspaces) for o in self.organizations}

    def workflow_names(self) -> dict[str, frozenset[str]]:
        """Workspace id -> the names of its Aegis workflows."""
        return {w.id: frozenset(f.name for f in w.workflows) for w in self.workspaces()}

    def campaign_names(self) -> dict[str, dict[str, frozenset[str]]]:
        """Workspace id -> "core" / "engage" -> the names of its campaigns of that kind.

        Core campaigns include BYOP pools (they are Core number pools too); 10DLC campaigns are
        not report filters.
        """
        return {
            w.id: {
                "core": frozenset(c.name for c in w.campaigns_of(*CAMPAIGN_KINDS["core"])),
                "engage": frozenset(c.name for c in w.campaigns_of(*CAMPAIGN_KINDS["engage"])),
            }
            for w in self.workspaces()
        }

    def to_dict(self) -> dict:
        return {
            "organizations": [
                {
                    "id": o.id,
                    "name": o.name,
                    "workspaces": [
                        {
                            "id": w.id,
                            "name": w.name,
                            "protect_numbers": w.protect_numbers,
                            "weight": w.weight,
                            "campaigns": [
                                {
                                    "id": c.id,
                                    "name": c.name,
                                    "kind": c.kind,
                                    "numbers": list(c.numbers),
                                }
                                for c in w.campaigns
                            ],
                            "workflows": [{"name": f.name, "tier": f.tier} for f in w.workflows],
                        }
                        for w in o.workspaces
                    ],
                }
                for o in self.organizations
            ]
        }

    @classmethod
    def from_dict(cls, data: dict) -> Tenancy:
        orgs = []
        for o in data["organizations"]:
            wss = []
            for w in o["workspaces"]:
                wss.append(
                    Workspace(
                        id=w["id"],
                        organization_id=o["id"],
                        name=w.get("name", w["id"]),
                        campaigns=tuple(
                            Campaign(c["id"], c["name"], c["kind"], tuple(c.get("numbers", ())))
                            for c in w.get("campaigns", ())
                        ),
                        workflows=tuple(Workflow(f["name"], f["tier"]) for f in w.get("workflows", ())),
                        protect_numbers=int(w.get("protect_numbers", 0)),
                        weight=float(w.get("weight", 1.0)),
                    )
                )
            orgs.append(Organization(o["id"], o.get("name", o["id"]), tuple(wss)))
        return cls(tuple(orgs))


def _pool(area_code: str, first: int, count: int) -> tuple[str, ...]:
    return tuple(f"+1{area_code}555{first + i:04d}" for i in range(count))


def _workspace(
    org: str,
    ws: str,
    name: str,
    area: str,
    workflows: list[tuple[str, WorkflowTier]],
    *,
    byop: bool,
    weight: float,
    protect: int,
) -> Workspace:
    campaigns = [
        Campaign(f"{ws}-core-callback", f"{name} Callback", "core", _pool(area, 1000, 8)),
        Campaign(f"{ws}-core-sales", f"{name} Sales Line", "core", _pool(area, 2000, 4)),
        Campaign(f"{ws}-engage-promo", f"{name} Promotions", "engage"),
        Campaign(f"{ws}-10dlc", f"{name} Notifications 10DLC", "10dlc", _pool(area, 3000, 2)),
    ]
    if byop:
        campaigns.append(Campaign(f"{ws}-byop", f"{name} BYOP Pool", "byop", _pool(area, 4000, 6)))
    return Workspace(
        id=ws,
        organization_id=org,
        name=name,
        campaigns=tuple(campaigns),
        workflows=tuple(Workflow(n, t) for n, t in workflows),
        protect_numbers=protect,
        weight=weight,
    )


DEMO_TENANCY = Tenancy(
    (
        Organization(
            "acme",
            "Acme Corporation",
            (
                _workspace(
                    "acme",
                    "acme-east",
                    "Acme East",
                    "212",
                    [("inbound-screening", "etl"), ("outbound-verify", "lite")],
                    byop=True,
                    weight=0.45,
                    protect=12,
                ),
                _workspace(
                    "acme",
                    "acme-west",
                    "Acme West",
                    "415",
                    [("inbound-screening", "etl"), ("collections", "lite")],
                    byop=False,
                    weight=0.35,
                    protect=5,
                ),
                _workspace(
                    "acme",
                    "acme-labs",
                    "Acme Labs",
                    "512",
                    [("lab-experiments", "lite")],
                    byop=False,
                    weight=0.20,
                    protect=0,
                ),
            ),
        ),
        Organization(
            "globex",
            "Globex Ltd",
            (
                _workspace(
                    "globex",
                    "globex-main",
                    "Globex Main",
                    "312",
                    [("fraud-screen", "etl")],
                    byop=True,
                    weight=1.0,
                    protect=3,
                ),
            ),
        ),
    )
)


def load_tenancy(home_root: Path | None = None) -> Tenancy:
    """The deployment's tenancy from `tenancy.yaml` in the data folder, else the demo tenancy."""
    if home_root is not None:
        path = home_root / "tenancy.yaml"
        if path.exists():
            return Tenancy.from_dict(yaml.safe_load(path.read_text()))
    return DEMO_TENANCY
