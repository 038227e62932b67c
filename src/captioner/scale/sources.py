"""Where the photos of a Ray job come from: local paths (named as the plain CLI names them) and any
filesystem pyarrow or fsspec can read (`s3://bucket/photos/`, `gs://...`, `hf://...`), listed on the
driver and read by the workers."""
from __future__ import annotations

import functools
import re
from pathlib import Path

from captioner.errors import ConfigError, ImageError
from captioner.inputs.images import IMAGE_EXTENSIONS

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: the most bytes read for one remote photo (local files are checked by `open_image` itself)
MAX_REMOTE_BYTES = 512 * 1024 * 1024


def is_uri(name: str) -> bool:
    """`s3://...`, `gs://...`, `file://...`: a name a filesystem library resolves (not a plain path)."""
    return bool(_URI.match(name))


@functools.lru_cache(maxsize=32)
def _filesystem(root: str):
    """A pyarrow filesystem for the URI's scheme and authority (cached per worker process)."""
    import pyarrow.fs as pafs

    try:
        fs, _ = pafs.FileSystem.from_uri(root)
        return fs
    except (ValueError, TypeError, NotImplementedError, OSError) as arrow_exc:
        try:
            import fsspec

            fs, _ = fsspec.core.url_to_fs(root)
        except ImportError:
            raise ConfigError(f"{root}: pyarrow cannot read this kind of address ({arrow_exc}) and fsspec is "
                              "not installed (pip install fsspec and the scheme's package, e.g. s3fs)") from None
        except Exception as exc:
            raise ConfigError(f"{root}: no filesystem for this address ({exc})") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def _split(uri: str):
    """(filesystem, path inside it) for a URI."""
    import pyarrow.fs as pafs

    scheme_end = uri.index("://") + 3
    authority_end = uri.find("/", scheme_end)
    root = uri if authority_end < 0 else uri[:authority_end]
    fs = _filesystem(root)
    if isinstance(fs, pafs.PyFileSystem):  # fsspec: its own path rules
        return fs, fs.handler.fs._strip_protocol(uri)
    return fs, pafs.FileSystem.from_uri(uri)[1]


def list_photos(sources: list[str]) -> list[str]:
    """Photo names in order: files as given; folders (local or remote) searched recursively for image
    files, sorted. Missing files stay in the list (their rows say so). Local folders are expanded as
    `captioner caption` expands them, so both name a photo the same way."""
    from captioner.inputs.sources import expand_inputs

    out: list[str] = []
    for source in sources:
        if not is_uri(source):
            out.extend(expand_inputs([source], IMAGE_EXTENSIONS))
            continue
        import pyarrow.fs as pafs

        fs, path = _split(source)
        try:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.Directory:
                prefix = source[: source.index("://") + 3]
                found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
                names = sorted(f.path for f in found if f.type == pafs.FileType.File
                               and Path(f.path).suffix.lower() in IMAGE_EXTENSIONS)
                out.extend(prefix + n.lstrip("/") if prefix != "file://" else prefix + n for n in names)
                continue
        except OSError as exc:
            raise ConfigError(f"{source}: cannot list it ({exc})") from None
        out.append(source)
    return out


def read_remote(uri: str) -> bytes:
    """The bytes of a remote photo; failures are `ImageError`s naming it."""
    import pyarrow.fs as pafs

    try:
        fs, path = _split(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise ImageError(f"{uri}: file not found")
        if info.type == pafs.FileType.Directory:
            raise ImageError(f"{uri}: is a folder, not an image file")
        if info.size is not None and info.size > MAX_REMOTE_BYTES:
            raise ImageError(f"{uri}: the file is {info.size / 2**20:.0f} MB, more than the "
                             f"{MAX_REMOTE_BYTES // 2**20} MB read for one photo")
        with fs.open_input_stream(path) as f:
            data = f.read(MAX_REMOTE_BYTES + 1)
    except ImageError:
        raise
    except ConfigError as exc:
        raise ImageError(str(exc)) from None
    except Exception as exc:  # a filesystem's own errors (permissions, network) name the reason
        raise ImageError(f"{uri}: cannot be read ({type(exc).__name__}: {exc})") from None
    if not data:
        raise ImageError(f"{uri}: the file is empty (0 bytes)")
    return data
