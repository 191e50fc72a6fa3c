"""The registry: which contract modules a network runs, by name, in a fixed order.

Part of contracts/. The executor finds methods here; genesis and block-start hooks run in the
registry's order, so every node runs scheduled work in the same sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from contracts.base import Context, Method, MethodTable
from ledger.reasons import ContractError, Reason


@dataclass(frozen=True)
class Contract:
    name: str
    methods: MethodTable
    genesis: Callable[[Context, dict[str, Any]], None] | None
    begin_block: Callable[[Context], None] | None
    next_due_ms: Callable[[Any], int | None] | None
    queries: dict[str, Callable[..., Any]]

    @classmethod
    def from_module(cls, module: ModuleType) -> Contract:
        return cls(
            module.NAME,
            module.METHODS,
            getattr(module, "genesis", None),
            getattr(module, "begin_block", None),
            getattr(module, "next_due_ms", None),
            dict(getattr(module, "QUERIES", {})),
        )


class Registry:
    def __init__(self, modules: list[ModuleType]) -> None:
        self.contracts: dict[str, Contract] = {}
        for module in modules:
            contract = Contract.from_module(module)
            if contract.name in self.contracts:
                raise ValueError(f"contract {contract.name} registered twice")
            self.contracts[contract.name] = contract

    def method(self, contract: str, method: str) -> Method:
        found = self.contracts.get(contract)
        if found is None:
            raise ContractError(Reason.UNKNOWN_CONTRACT, f"no contract {contract!r}")
        resolved = found.methods.get(method)
        if resolved is None:
            raise ContractError(Reason.UNKNOWN_METHOD, f"contract {contract!r} has no method {method!r}")
        return resolved

    def check_call(self, contract: str, method: str, args: dict[str, Any]) -> None:
        """The stateless checks on a call (names and argument types), usable at admission."""
        self.method(contract, method).check_args(args)

    def in_order(self) -> list[Contract]:
        return list(self.contracts.values())


def default_registry() -> Registry:
    """Every built-in contract, in the order their genesis and block-start hooks run."""
    from contracts import builtin

    return Registry(builtin.MODULES)
