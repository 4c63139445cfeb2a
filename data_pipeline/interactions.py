"""`UserItems`: each user's set of items, stored compactly as CSR arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UserItems:
    """The items of every user, in compressed sparse row form.

    Attributes:
        indptr: int64 [n_users + 1]; user `u` owns `indices[indptr[u]:indptr[u + 1]]`.
        indices: int64 [nnz] item ids, sorted and unique within each user.
        n_items: size of the item id space (ids are in `[0, n_items)`).

    Example:
        >>> ui = UserItems.from_pairs([1, 0, 1], [4, 2, 3], n_users=3, n_items=5)
        >>> ui.items_of(1).tolist(), ui.users_with_items().tolist()
        ([3, 4], [0, 1])
    """

    indptr: np.ndarray
    indices: np.ndarray
    n_items: int

    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> UserItems:
        """Builds the CSR form of (user, item) pairs; repeated pairs are kept once.

        Raises:
            ValueError: if the arrays differ in length or an id is outside its range.
        """
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if users.shape != items.shape:
            raise ValueError(f"users and items differ in length: {users.size} vs {items.size}.")
        for label, ids, bound in (("user", users, n_users), ("item", items, n_items)):
            if ids.size and (ids.min() < 0 or ids.max() >= bound):
                raise ValueError(f"{label} ids must lie in [0, {bound}); got [{ids.min()}, {ids.max()}].")
        base = max(int(n_items), 1)  # keeps the key arithmetic defined for an empty item space
        keys = np.unique(users * base + items)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys // base, minlength=n_users), out=indptr[1:])
        return cls(indptr=indptr, indices=keys % base, n_items=int(n_items))

    @property
    def n_users(self) -> int:
        """Number of users (rows), including those without items."""
        return int(self.indptr.size - 1)

    @property
    def nnz(self) -> int:
        """Number of (user, item) pairs."""
        return int(self.indices.size)

    def items_of(self, user: int) -> np.ndarray:
        """The sorted item ids of `user` (a view, do not modify)."""
        return self.indices[self.indptr[user] : self.indptr[user + 1]]

    def users_with_items(self) -> np.ndarray:
        """Ids of the users that own at least one item, ascending."""
        return np.flatnonzero(np.diff(self.indptr) > 0).astype(np.int64)

    def to_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """All (user, item) pairs, sorted by user then item, as two int64 arrays."""
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.indptr))
        return users, self.indices.copy()
