"""Limits a GraphQL request must pass before any resolver runs: depth, cost and page sizes.

One validation rule walks each operation once, following fragments, and reports:

* depth: the number of fields on the longest path, leaves included
  (`{ gpus { edges { node { uuid } } } }` has depth 4). Introspection (`__schema`,
  `__type`) has its own, larger limit: the standard introspection query of GraphiQL
  nests `ofType` about ten times.
* `first` of a connection (see `Page`): below 1 or above its maximum is refused, naming
  the setting that holds the maximum.
* cost: an estimate of the objects an answer can hold. A connection costs `first`
  (its default when absent) times one plus the cost of what each node asks for; any
  other list of objects counts as `LIST_GUESS` items; a single object costs 1; scalars
  and the connection plumbing (`edges`, `node`, `pageInfo`) cost nothing themselves.
  So `first` multiplies the cost of everything nested in it:
  `gpus(first: 1000) { ... telemetry(first: 10000) { ... } }` costs about ten million.

Variables are known here (the rule is built per request), so `first: $n` counts as its
value. Invalid documents are walked too (the rules run side by side): unknown fields and
fragments are skipped, fragment cycles are cut, the standard rules report them.
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
    VariableNode,
    get_named_type,
    is_composite_type,
    type_from_ast,
    value_from_ast_untyped,
)
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


def check_first(value: Any, page: Page) -> int:
    """`value` (None: the default) as a page size; ValueError naming the limit otherwise."""
    if value is None:
        return page.default
    if value < 1:
        raise ValueError(f"{value} is less than 1")
    if value > page.maximum:
        raise ValueError(f"{value} is more than {page.limit_name} ({page.maximum})")
    return value


def guard_rule(limits: Limits, variables: Mapping[str, Any] | None) -> type[ValidationRule]:
    """A graphql-core validation rule enforcing `limits`, with this request's variables."""

    class QueryGuard(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            _Walk(self.context, limits, node, variables or {}).run()

    return QueryGuard


class _Walk:
    def __init__(
        self,
        context: ValidationContext,
        limits: Limits,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
    ) -> None:
        self.context, self.limits, self.operation = context, limits, operation
        self.variables = dict(variables)
        for definition in operation.variable_definitions or ():
            name = definition.variable.name.value
            if name not in self.variables and definition.default_value is not None:
                self.variables[name] = value_from_ast_untyped(definition.default_value)
        self.deepest: tuple[int, int, FieldNode] | None = None  # (depth, limit, field)

    def run(self) -> None:
        root = self.context.schema.get_root_type(self.operation.operation)
        if root is None:
            return
        cost = self.cost(root, self.operation.selection_set, 0, self.limits.max_depth, ())
        name = self.operation.name.value if self.operation.name else "the query"
        if self.deepest is not None:
            depth, limit, field = self.deepest
            self.context.report_error(
                GraphQLError(
                    f"{name} nests fields {depth} deep at '{field.name.value}'; at most {limit}",
                    field,
                    extensions={"code": "QUERY_TOO_DEEP", "limit": limit},
                )
            )
        if cost > self.limits.max_cost:
            self.context.report_error(
                GraphQLError(
                    f"{name} could return about {cost} objects; the cost limit is "
                    f"{self.limits.max_cost}: each `first` multiplies the cost of the fields "
                    "inside it, so ask for fewer items per page or fewer nested fields",
                    self.operation,
                    extensions={
                        "code": "QUERY_TOO_COSTLY",
                        "cost": cost,
                        "limit": self.limits.max_cost,
                    },
                )
            )

    def cost(
        self,
        parent: Any,
        selections: SelectionSetNode,
        depth: int,
        limit: int,
        fragments: tuple[str, ...],
    ) -> int:
        total = 0
        for node in selections.selections:
            if isinstance(node, FieldNode):
                total += self.field_cost(parent, node, depth + 1, limit, fragments)
            elif isinstance(node, InlineFragmentNode):
                inner = parent
                if node.type_condition is not None:
                    inner = type_from_ast(self.context.schema, node.type_condition) or parent
                total += self.cost(inner, node.selection_set, depth, limit, fragments)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                fragment = self.context.get_fragment(name)
                if fragment is None or name in fragments:
                    continue  # unknown or cyclic: the standard rules report it
                inner = type_from_ast(self.context.schema, fragment.type_condition) or parent
                total += self.cost(inner, fragment.selection_set, depth, limit, (*fragments, name))
        return total

    def field_cost(
        self, parent: Any, node: FieldNode, depth: int, limit: int, fragments: tuple[str, ...]
    ) -> int:
        name = node.name.value
        if name in _META_FIELDS:
            definition = _META_FIELDS[name]
            limit = self.limits.max_introspection_depth
        else:
            fields = getattr(parent, "fields", None) or {}
            definition = fields.get(name)
        if depth > limit and (self.deepest is None or depth > self.deepest[0]):
            self.deepest = (depth, limit, node)
        if definition is None or node.selection_set is None:
            return 0
        named = get_named_type(definition.type)
        if not is_composite_type(named):
            return 0
        inner = self.cost(named, node.selection_set, depth, limit, fragments)
        page = self.limits.pages.get(f"{getattr(parent, 'name', '')}.{name}")
        if page is not None:
            return self.page_size(node, page) * (1 + inner)
        if _is_plumbing(parent):
            return inner
        if _is_list(definition.type):
            return LIST_GUESS * (1 + inner)
        return 1 + inner

    def page_size(self, node: FieldNode, page: Page) -> int:
        argument = next((a for a in node.arguments or () if a.name.value == "first"), None)
        value = None
        if argument is not None and isinstance(argument.value, VariableNode):
            value = self.variables.get(argument.value.name.value)
        elif argument is not None:
            value = value_from_ast_untyped(argument.value)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            return page.default  # not an Int: the standard rules or coercion refuse it
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
