"""Which Flower node serves which client: the server's two-way map, without a population's dict.

The server addresses a client by its node id (``to_node[c]``) and reads a reply's client from
the node that sent it (``to_client.get(node, -1)``). After the ``query.identify`` handshake the
map is a dict of the answers; on an in-process grid that is a
:class:`~fedsim.protocol.PartitionDirectory` it asks the grid, so a cross-device population of
a million clients costs no million-entry dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from fedsim.protocol import PartitionDirectory

__all__ = ["ClientNodes", "Lookup"]


class Lookup(Mapping[int, int]):
    """A read-only ``Mapping[int, int]`` computed by a function instead of stored.

    Parameters
    ----------
    find : callable
        The value of a key, or ``None`` when the key is absent.
    keys : callable
        Iterates over the keys (only :meth:`__iter__` calls it).
    size : int
        Number of keys.

    Examples
    --------
    >>> squares = Lookup(lambda k: k * k if 0 <= k < 3 else None, lambda: iter(range(3)), 3)
    >>> squares[2], squares.get(5, -1), 1 in squares, dict(squares)
    (4, -1, True, {0: 0, 1: 1, 2: 4})
    """

    def __init__(
        self, find: Callable[[int], int | None], keys: Callable[[], Iterator[int]], size: int
    ) -> None:
        self._find, self._keys, self._size = find, keys, size

    def __getitem__(self, key: int) -> int:
        value = self._find(key) if isinstance(key, int) else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[int]:
        return self._keys()

    def __len__(self) -> int:
        return self._size


class ClientNodes:
    """Client id ↔ node id, both directions.

    Attributes
    ----------
    to_node : Mapping[int, int]
        The node id of each client id ``0..num_clients-1``.
    to_client : Mapping[int, int]
        The client id of each node id.

    Examples
    --------
    >>> nodes = ClientNodes.from_dict({0: 70, 1: 50})
    >>> nodes.to_node[1], nodes.to_client[70], nodes.to_client.get(99, -1), len(nodes)
    (50, 0, -1, 2)
    """

    def __init__(self, to_node: Mapping[int, int], to_client: Mapping[int, int]) -> None:
        if len(to_node) != len(to_client):
            raise ValueError(
                f"a client–node map needs one node per client, got {len(to_node)} clients and "
                f"{len(to_client)} nodes"
            )
        self.to_node = to_node
        self.to_client = to_client

    @classmethod
    def from_dict(cls, client_to_node: Mapping[int, int]) -> ClientNodes:
        """The map of a handshake's answers (client id → node id), stored both ways."""
        to_node = dict(client_to_node)
        return cls(to_node, {node: client for client, node in to_node.items()})

    @classmethod
    def from_directory(cls, directory: PartitionDirectory) -> ClientNodes:
        """The map of an in-process grid, computed by asking it (nothing per client stored)."""
        n = directory.num_partitions

        def node_of(client: int) -> int | None:
            return directory.node_id(client) if 0 <= client < n else None

        def nodes() -> Iterator[int]:
            return (directory.node_id(c) for c in range(n))

        return cls(
            Lookup(node_of, lambda: iter(range(n)), n),
            Lookup(directory.partition_id, nodes, n),
        )

    def __len__(self) -> int:
        return len(self.to_node)
