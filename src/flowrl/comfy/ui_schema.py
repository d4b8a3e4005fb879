"""Pydantic shape of a UI ("workflow") JSON: checked once at the boundary so conversion never meets junk."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flowrl.errors import FlowRLError

NodeId = int | str


class UIConversionError(FlowRLError):
    """A UI workflow cannot be converted to the API format (bad shape, unknown layout, undefined group)."""


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class UIInput(_Loose):
    name: str = ""
    type: Any = "*"
    link: int | None = None
    widget: dict | None = None


class UIOutput(_Loose):
    type: Any = "*"


class UINode(_Loose):
    id: NodeId
    type: str
    mode: int = 0
    inputs: list[UIInput] = Field(default_factory=list)
    outputs: list[UIOutput] = Field(default_factory=list)
    widgets_values: list | dict | None = None
    title: str | None = None

    @field_validator("inputs", "outputs", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class UILink(_Loose):
    """A link as [id, from_node, from_slot, to_node, to_slot, type] or the newer dict form."""

    id: int
    origin_id: NodeId
    origin_slot: int

    @classmethod
    def parse(cls, raw: Any) -> UILink:
        if isinstance(raw, list) and len(raw) >= 3:
            raw = {"id": raw[0], "origin_id": raw[1], "origin_slot": raw[2]}
        return cls.model_validate(raw)


class GroupInnerNode(UINode):
    id: NodeId | None = None
    index: int


class GroupDefinition(_Loose):
    """A legacy group node definition (extra.groupNodes[name])."""

    nodes: list[GroupInnerNode]
    links: list[tuple[int | None, int, int, int, Any, Any] | tuple[int | None, int, int, int]] = Field(
        default_factory=list
    )
    external: list[tuple[Any, int, Any]] = Field(default_factory=list)


class UIWorkflow(_Loose):
    nodes: list[UINode]
    links: list[UILink] = Field(default_factory=list)
    group_nodes: dict[str, GroupDefinition] = Field(default_factory=dict)
    has_subgraphs: bool = False

    @classmethod
    def parse(cls, raw: dict, source: str) -> UIWorkflow:
        """Validate a parsed UI JSON; raise UIConversionError naming the offending field."""
        try:
            extra = raw.get("extra") if isinstance(raw.get("extra"), dict) else {}
            definitions = raw.get("definitions") if isinstance(raw.get("definitions"), dict) else {}
            raw_links = raw.get("links") or []
            if not isinstance(raw_links, list):
                raise UIConversionError(f"{source}: UI workflow field 'links' must be a list, got {raw_links!r:.60}")
            links = []
            for i, lk in enumerate(raw_links):
                try:
                    links.append(UILink.parse(lk))
                except ValidationError:
                    raise UIConversionError(
                        f"{source}: links[{i}] = {lk!r:.80} is not [id, from_node, from_slot, to_node, to_slot, type]"
                    ) from None
            return cls(
                nodes=raw.get("nodes"),
                links=links,
                group_nodes=extra.get("groupNodes") or {},
                has_subgraphs=bool(definitions.get("subgraphs")),
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "links"
            raise UIConversionError(
                f"{source}: UI workflow field {where!r}: {err['msg']} (got {err.get('input')!r:.60}); "
                "re-export the workflow from ComfyUI"
            ) from None
