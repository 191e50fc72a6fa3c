"""The Python SDK: keys, building and signing every kind of transaction, submitting, querying.

Part of keiretsu_node/. `from keiretsu_node.client import Client, KeyPair, call, build`.
"""

from keiretsu_node.client.calls import Call, CallError, build, call
from keiretsu_node.client.http import ApiError, Client
from ledger.keys import KeyPair, address_of, is_address

__all__ = ["ApiError", "Call", "CallError", "Client", "KeyPair", "address_of", "build", "call", "is_address"]
