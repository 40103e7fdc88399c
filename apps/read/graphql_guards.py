"""Limits a GraphQL request must pass before any resolver runs: size, depth, cost and page sizes.

Checked in this order, each bounded by what came before:

* document size (`check_document`, before parsing): at most `max_document_chars`
  characters (graphql-core's parser itself refuses nesting deeper than it can recurse);
* aliases and fragment spreads (`shape_rule`): counted once per node of the document,
  at most `max_aliases` and `max_spreads`;
* depth and cost (`guard_rule`), one walk per operation in which every fragment is
  costed once and remembered, so the walk is linear in the document (a chain of
  fragments that each spread the next twice costs n steps, not 2^n):

  - depth: the number of fields on the longest path, leaves included
    (`{ gpus { edges { node { uuid } } } }` has depth 4). Introspection (`__schema`,
    `__type`) has its own, larger limit: GraphiQL's introspection query nests `ofType`
    about ten times.
  - `first` of a connection (see `Page`): below 1 or above its maximum is refused,
    naming the setting that holds the maximum.
  - cost: an estimate of the objects an answer can hold. A connection costs `first`
    (its default when absent) times one plus the cost of what each node asks for; any
    other list of objects counts as `LIST_GUESS` items; a single object costs 1; scalars
    and the connection plumbing (`edges`, `node`, `pageInfo`) cost nothing themselves.
    `gpus(first: 1000) { ... telemetry(first: 10000) { ... } }` costs about ten million.

Arguments are costed as execution will see them: variables are coerced by graphql-core
(`get_variable_values`) and arguments by `get_argument_values`, so `first: $n` with
`{"n": 10000.0}` counts as 10000, exactly what the resolver gets. Variables that do not
coerce are left to execution, which refuses them before any resolver runs. Invalid
documents are walked too (the rules run side by side): unknown fields and fragments are
skipped, fragment cycles are cut, the standard rules report them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_named_type,
    is_composite_type,
    type_from_ast,
)
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef

LIST_GUESS = 10
_META_FIELDS = {"__schema": SchemaMetaFieldDef, "__type": TypeMetaFieldDef}


@dataclass(frozen=True)
class Page:
    """The `first` argument of one connection field: default, maximum, and where that is set."""

    default: int
    maximum: int
    limit_name: str


@dataclass(frozen=True)
class Limits:
    max_depth: int
    max_introspection_depth: int
    max_cost: int
    pages: Mapping[str, Page]  # by "Type.field", e.g. "GPU.telemetry"
    max_document_chars: int = 20_000
    max_aliases: int = 30
    max_spreads: int = 100


def check_first(value: Any, page: Page) -> int:
    """`value` (None: the default) as a page size; ValueError naming the limit otherwise."""
    if value is None:
        return page.default
    if value < 1:
        raise ValueError(f"{value} is less than 1")
    if value > page.maximum:
        raise ValueError(f"{value} is more than {page.limit_name} ({page.maximum})")
    return value


def check_document(query: Any, limits: Limits) -> GraphQLError | None:
    """An error when the document is too long to parse; None otherwise."""
    if isinstance(query, str) and len(query) > limits.max_document_chars:
        return GraphQLError(
            f"the document is {len(query)} characters long; at most {limits.max_document_chars}",
            extensions={"code": "DOCUMENT_TOO_LARGE", "limit": limits.max_document_chars},
        )
    return None


def shape_rule(limits: Limits) -> type[ValidationRule]:
    """A validation rule counting aliases and fragment spreads, each node once."""

    class ShapeGuard(ValidationRule):
        aliases = spreads = 0

        def enter_field(self, node: FieldNode, *_: Any) -> None:
            if node.alias is not None:
                self.aliases += 1
                if self.aliases == limits.max_aliases + 1:
                    self.refuse(node, "aliases", limits.max_aliases, "TOO_MANY_ALIASES")

        def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
            self.spreads += 1
            if self.spreads == limits.max_spreads + 1:
                self.refuse(node, "fragment spreads", limits.max_spreads, "TOO_MANY_SPREADS")

        def refuse(self, node: Any, what: str, limit: int, code: str) -> None:
            self.report_error(
                GraphQLError(
                    f"the document has more than {limit} {what}",
                    node,
                    extensions={"code": code, "limit": limit},
                )
            )

    return ShapeGuard


def guard_rule(limits: Limits, variables: Mapping[str, Any] | None) -> type[ValidationRule]:
    """A graphql-core validation rule enforcing `limits`, with this request's variables."""

    class QueryGuard(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            _Walk(self.context, limits, node, variables or {}).run()

    return QueryGuard


@dataclass(frozen=True)
class _Size:
    """What a selection set asks for: cost, and its longest field paths with their last field.

    `height` counts paths outside introspection, `meta_height` those through `__schema`
    or `__type` (checked against the larger introspection limit).
    """

    cost: int = 0
    height: int = 0
    deepest: FieldNode | None = None
    meta_height: int = 0
    meta_deepest: FieldNode | None = None

    def __add__(self, other: _Size) -> _Size:
        high = self if self.height >= other.height else other
        meta = self if self.meta_height >= other.meta_height else other
        return _Size(
            self.cost + other.cost, high.height, high.deepest, meta.meta_height, meta.meta_deepest
        )


class _Walk:
    def __init__(
        self,
        context: ValidationContext,
        limits: Limits,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
    ) -> None:
        self.context, self.limits, self.operation = context, limits, operation
        # name -> size, per operation (a fragment's `first: $n` depends on its variables);
        # None while the fragment is being walked, so a cycle ends there
        self.fragments: dict[str, _Size | None] = {}
        coerced = get_variable_values(
            context.schema, operation.variable_definitions or (), dict(variables)
        )
        # a list is coercion errors: execution reports them and runs nothing
        self.variables: dict[str, Any] | None = None if isinstance(coerced, list) else coerced

    def run(self) -> None:
        root = self.context.schema.get_root_type(self.operation.operation)
        if root is None:
            return
        size = self.selections(root, self.operation.selection_set)
        name = self.operation.name.value if self.operation.name else "the query"
        for height, field, limit in (
            (size.height, size.deepest, self.limits.max_depth),
            (size.meta_height, size.meta_deepest, self.limits.max_introspection_depth),
        ):
            if height > limit and field is not None:
                self.context.report_error(
                    GraphQLError(
                        f"{name} nests fields {height} deep at '{field.name.value}'; "
                        f"at most {limit}",
                        field,
                        extensions={"code": "QUERY_TOO_DEEP", "limit": limit},
                    )
                )
        if size.cost > self.limits.max_cost:
            self.context.report_error(
                GraphQLError(
                    f"{name} could return about {size.cost} objects; the cost limit is "
                    f"{self.limits.max_cost}: each `first` multiplies the cost of the fields "
                    "inside it, so ask for fewer items per page or fewer nested fields",
                    self.operation,
                    extensions={
                        "code": "QUERY_TOO_COSTLY",
                        "cost": size.cost,
                        "limit": self.limits.max_cost,
                    },
                )
            )

    def selections(self, parent: Any, selections: SelectionSetNode) -> _Size:
        total = _Size()
        for node in selections.selections:
            if isinstance(node, FieldNode):
                total += self.field(parent, node)
            elif isinstance(node, InlineFragmentNode):
                inner = parent
                if node.type_condition is not None:
                    inner = type_from_ast(self.context.schema, node.type_condition) or parent
                total += self.selections(inner, node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                total += self.fragment(node.name.value, parent)
        return total

    def fragment(self, name: str, parent: Any) -> _Size:
        """A named fragment's size, walked once per request and remembered."""
        if name in self.fragments:
            return self.fragments[name] or _Size()  # None: a cycle, reported by the standard rule
        definition = self.context.get_fragment(name)
        if definition is None:
            return _Size()  # unknown: the standard rules report it
        self.fragments[name] = None
        inner = type_from_ast(self.context.schema, definition.type_condition) or parent
        size = self.fragments[name] = self.selections(inner, definition.selection_set)
        return size

    def field(self, parent: Any, node: FieldNode) -> _Size:
        name = node.name.value
        meta = name in _META_FIELDS
        fields = getattr(parent, "fields", None) or {}
        definition = _META_FIELDS[name] if meta else fields.get(name)
        child = _Size()
        cost = 0
        if definition is not None and node.selection_set is not None:
            named = get_named_type(definition.type)
            if is_composite_type(named):
                child = self.selections(named, node.selection_set)
                cost = self.cost(parent, node, definition, child.cost)
        if meta:
            high = max(child.height, child.meta_height)
            deepest = child.deepest if child.height >= child.meta_height else child.meta_deepest
            return _Size(cost, 0, None, 1 + high, deepest or node)
        meta_height = 1 + child.meta_height if child.meta_height else 0
        return _Size(cost, 1 + child.height, child.deepest or node, meta_height, child.meta_deepest)

    def cost(self, parent: Any, node: FieldNode, definition: Any, inner: int) -> int:
        page = self.limits.pages.get(f"{getattr(parent, 'name', '')}.{node.name.value}")
        if page is not None:
            return self.page_size(node, definition, page) * (1 + inner)
        if _is_plumbing(parent):
            return inner
        if _is_list(definition.type):
            return LIST_GUESS * (1 + inner)
        return 1 + inner

    def page_size(self, node: FieldNode, definition: Any, page: Page) -> int:
        """`first` as the resolver will get it; refused here when out of range."""
        if self.variables is None:
            return page.default  # execution refuses the variables
        try:
            value = get_argument_values(definition, node, self.variables).get("first")
        except GraphQLError:
            return page.default  # not coercible: the standard rules or execution refuse it
        argument = next((a for a in node.arguments or () if a.name.value == "first"), node)
        try:
            return check_first(value, page)
        except ValueError as exc:
            self.context.report_error(
                GraphQLError(
                    f"first: {exc}; follow pageInfo.endCursor with `after` for more",
                    argument,
                    extensions={"code": "BAD_ARGUMENT", "argument": "first"},
                )
            )
            return page.default


def _is_list(kind: Any) -> bool:
    if isinstance(kind, GraphQLNonNull):
        kind = kind.of_type
    return isinstance(kind, GraphQLList)


def _is_plumbing(parent: Any) -> bool:
    """A Relay connection or edge type: its fields only carry the connection's own nodes."""
    if not isinstance(parent, GraphQLObjectType):
        return False
    fields = parent.fields
    return {"edges", "pageInfo"} <= fields.keys() or {"node", "cursor"} <= fields.keys()
