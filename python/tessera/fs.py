"""`tessera://` for fsspec: a dataset version's files, read by byte range.

    tessera://PUBLISHER/NAME@VERSION/FILE    tessera://NAME@VERSION/FILE    tessera://CID/FILE

    import pandas as pd
    df = pd.read_parquet("tessera://alice/crawl@v3/part-0.parquet", columns=["url"])
    import pyarrow.dataset as pds, fsspec
    fs = fsspec.filesystem("tessera", bootstrap=["/ip4/.../p2p/..."])
    table = pds.dataset("alice/crawl@v3", filesystem=fs, format="parquet").to_table()

The package registers the protocol through its entry points, so `fsspec.filesystem("tessera")`
and any library that takes fsspec URLs find it. A version is read-only and never changes (its
name pins a version when it says `@vN`); each file's bytes are checked against its CID before
any range of it is returned, and kept in the shared shard cache.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from . import _native


_HEX = set("0123456789abcdef")


def _looks_like_cid(part: str) -> bool:
    """A base32 CID ("bafy...") rather than a publisher key (64 hex digits) or a name."""
    publisher = len(part) == 64 and set(part) <= _HEX
    return "@" not in part and part.startswith("b") and len(part) >= 40 and not publisher


class TesseraFileSystem(AbstractFileSystem):
    """Read-only access to Tessera dataset versions."""

    protocol = "tessera"
    root_marker = ""

    def __init__(
        self,
        bootstrap: Sequence[str] = (),
        network: Optional[str] = None,
        config: Optional[str] = None,
        key: Optional[str] = None,
        cache: Optional[str] = None,
        cache_limit: int = 10 << 30,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self._options = {
            "bootstrap": list(bootstrap),
            "network": network,
            "config": config,
            "key": key,
            "cache": cache,
            "cache_limit": cache_limit,
        }
        self._versions: Dict[str, Any] = {}

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        path = str(path)
        if path.startswith("tessera://"):
            path = path[len("tessera://"):]
        return path.strip("/")

    def _split(self, path: str) -> Tuple[str, str]:
        """(the version's reference, the path inside it)."""
        parts = self._strip_protocol(path).split("/")
        if not parts or not parts[0]:
            raise ValueError("a tessera path names a version: PUBLISHER/NAME@VERSION/FILE or CID/FILE")
        if _looks_like_cid(parts[0]) or "@" in parts[0]:
            return parts[0], "/".join(parts[1:])
        if len(parts) >= 2:
            return "/".join(parts[:2]), "/".join(parts[2:])
        return parts[0], ""

    def _version(self, reference: str) -> Any:
        version = self._versions.get(reference)
        if version is None:
            version = _native.Dataset(reference, **self._options)
            self._versions[reference] = version
        return version

    def _entries(self, reference: str) -> List[Dict[str, Any]]:
        return [
            {"name": f"{reference}/{f['name']}", "size": f["size"], "type": "file", "rows": f["rows"], "cid": f["cid"]}
            for f in self._version(reference).files()
        ]

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> List[Any]:
        reference, inner = self._split(path)
        prefix = f"{reference}/{inner}".rstrip("/")
        out: Dict[str, Dict[str, Any]] = {}
        for entry in self._entries(reference):
            name = entry["name"]
            if name == prefix:
                out[name] = entry
            elif name.startswith(prefix + "/"):
                child = name[len(prefix) + 1:].split("/", 1)
                if len(child) == 1:
                    out[name] = entry
                else:
                    directory = f"{prefix}/{child[0]}"
                    out.setdefault(directory, {"name": directory, "size": 0, "type": "directory"})
        if not out:
            raise FileNotFoundError(path)
        listed = sorted(out.values(), key=lambda e: e["name"])
        return listed if detail else [e["name"] for e in listed]

    def info(self, path: str, **kwargs: Any) -> Dict[str, Any]:
        reference, inner = self._split(path)
        full = f"{reference}/{inner}".rstrip("/")
        for entry in self._entries(reference):
            if entry["name"] == full:
                return entry
            if entry["name"].startswith(full + "/"):
                return {"name": full, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    def cat_file(self, path: str, start: Optional[int] = None, end: Optional[int] = None, **kwargs: Any) -> bytes:
        reference, inner = self._split(path)
        size = self.info(path)["size"]
        start = 0 if start is None else (start + size if start < 0 else start)
        end = size if end is None else (end + size if end < 0 else end)
        return self._version(reference).read(inner, max(start, 0), max(end, 0))

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: Any = None, **kwargs: Any) -> "TesseraFile":
        if mode != "rb":
            raise PermissionError("a Tessera dataset version is read-only")
        return TesseraFile(self, path, mode=mode, block_size=block_size, cache_options=cache_options, **kwargs)

    def ukey(self, path: str) -> str:
        return self.info(path)["cid"]


class TesseraFile(AbstractBufferedFile):
    """A file of a version, read in verified ranges."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        reference, inner = self.fs._split(self.path)
        return self.fs._version(reference).read(inner, start, end)
