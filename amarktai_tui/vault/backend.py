"""Which keyring holds the secrets: ``[keys] backend`` in the config.

``auto``
    ``$PYTHON_KEYRING_BACKEND`` or keyring's own config file (``keyringrc.cfg``) when the
    user named a backend there; otherwise the best *OS* keyring that is available now:
    Secret Service (GNOME Keyring, KWallet's Secret Service, KeePassXC) on Linux, the macOS
    Keychain, the Windows Credential Locker. File backends that keyring would otherwise
    chain in (keyrings.cryptfile's and keyrings.alt's, which can be plaintext or prompt on
    the terminal) are never picked implicitly. Nothing usable raises VaultUnavailable,
    naming the options.
``cryptfile``
    keyrings.cryptfile's ``CryptFileKeyring`` (Argon2id + AES-GCM) in
    ``<data-dir>/keyring.cfg`` (mode 0600), unlocked with ``$AMARKTAI_KEYRING_PASSPHRASE``,
    so ``amarktai --daemon`` runs unattended on a server without a Secret Service.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amarktai_tui.vault.errors import VaultUnavailable

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

    from amarktai_tui.config import KeysSettings

PASSPHRASE_ENV = "AMARKTAI_KEYRING_PASSPHRASE"
CRYPTFILE_NAME = "keyring.cfg"
# Argon2id cost for our cryptfile: RFC 9106 section 4, second recommended option (t=3,
# m=64 MiB). keyrings.cryptfile's default (t=15) costs 1-10 s per secret read on a small server,
# and every read derives a fresh key. The parameters are not stored in the file: changing them
# makes existing files unreadable.
ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 2**16
ARGON2_PARALLELISM = 2

OPTIONS = (
    "start a Secret Service (e.g. gnome-keyring-daemon --unlock --components=secrets), "
    f'or set [keys] backend = "cryptfile" with ${PASSPHRASE_ENV}, '
    "or name a keyring backend in $PYTHON_KEYRING_BACKEND"
)


def open_backend(keys: KeysSettings, data_dir: Path) -> KeyringBackend:
    """The keyring backend ``keys.backend`` selects (see the module doc).

    Raises VaultUnavailable (one line naming the options) when there is none, when
    ``$PYTHON_KEYRING_BACKEND`` names a backend that cannot load, or when the cryptfile
    passphrase is missing or wrong.
    """
    if keys.backend == "cryptfile":
        return cryptfile_backend(data_dir / CRYPTFILE_NAME)
    return auto_backend()


def describe(backend: KeyringBackend) -> str:
    """A short name for messages: ``Secret Service``, ``encrypted file /path``, or the class name."""
    path = getattr(backend, "file_path", None)
    if isinstance(path, str):
        return f"encrypted file {path}" if _is_encrypted_file(backend) else f"file {path}"
    name = type(backend).__module__ + "." + type(backend).__qualname__
    return {
        "keyring.backends.SecretService.Keyring": "Secret Service",
        "keyring.backends.libsecret.Keyring": "Secret Service (libsecret)",
        "keyring.backends.macOS.Keyring": "macOS Keychain",
        "keyring.backends.Windows.WinVaultKeyring": "Windows Credential Locker",
    }.get(name, name)


def auto_backend() -> KeyringBackend:
    """The keyring the user named (env or keyringrc.cfg), else the best OS keyring available now."""
    import keyring.core
    from keyring.backends import chainer, fail, null

    named = os.environ.get("PYTHON_KEYRING_BACKEND")
    try:
        chosen: Any = keyring.core.load_env() or keyring.core.load_config()
    except Exception as exc:  # ImportError, AttributeError, RuntimeError (not viable here)
        what = f"PYTHON_KEYRING_BACKEND={named}" if named else "the keyring config file (keyringrc.cfg)"
        raise VaultUnavailable(f"cannot load the keyring named by {what}: {_short(exc)}") from None
    if chosen is not None:
        disabled = isinstance(chosen, fail.Keyring | null.Keyring) or (
            isinstance(chosen, chainer.ChainerBackend) and not chosen.backends
        )
        if disabled:
            what = f"PYTHON_KEYRING_BACKEND={named}" if named else "keyringrc.cfg"
            raise VaultUnavailable(f"{what} disables the keyring; {OPTIONS}")
        passphrase = os.environ.get(PASSPHRASE_ENV)
        if passphrase and _is_encrypted_file(chosen):
            _unlock(chosen, passphrase)
        return chosen  # type: ignore[no-any-return]
    native = _native_backends()
    if not native:
        raise VaultUnavailable(f"no OS keyring is available (no Secret Service on D-Bus); {OPTIONS}")
    return max(native, key=lambda b: b.priority)


def cryptfile_backend(path: Path) -> KeyringBackend:
    """keyrings.cryptfile's CryptFileKeyring at ``path`` (created 0600), unlocked from the environment.

    Raises VaultUnavailable when ``$AMARKTAI_KEYRING_PASSPHRASE`` is unset or blank, the
    passphrase does not open the file, or keyrings.cryptfile is not installed.
    """
    passphrase = os.environ.get(PASSPHRASE_ENV, "")
    if not passphrase.strip():
        raise VaultUnavailable(
            f'[keys] backend = "cryptfile" needs the passphrase in ${PASSPHRASE_ENV} '
            f"(it unlocks {path}; set it in the service's environment for --daemon)"
        )
    try:
        from keyrings.cryptfile.cryptfile import CryptFileKeyring
    except ImportError:
        raise VaultUnavailable(
            '[keys] backend = "cryptfile" needs the keyrings.cryptfile package (pip install keyrings.cryptfile)'
        ) from None
    backend = CryptFileKeyring()
    backend.file_path = str(path)
    backend.time_cost = ARGON2_TIME_COST
    backend.memory_cost = ARGON2_MEMORY_KIB
    backend.parallelism = ARGON2_PARALLELISM
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VaultUnavailable(f"cannot create {path.parent}: {exc.strerror}") from None
    _unlock(backend, passphrase)
    try:
        path.chmod(0o600)
    except OSError as exc:
        raise VaultUnavailable(f"cannot restrict {path} to mode 0600: {exc.strerror}") from None
    return backend  # type: ignore[no-any-return]


def _unlock(backend: Any, passphrase: str) -> None:
    """Give an encrypted file keyring its passphrase (creates the file on first use)."""
    try:
        backend.keyring_key = passphrase
    except ValueError:  # "Incorrect Password" / "MAC check failed"
        raise VaultUnavailable(
            f"${PASSPHRASE_ENV} does not unlock {backend.file_path} (wrong passphrase, or another Argon2 cost)"
        ) from None
    except OSError as exc:
        raise VaultUnavailable(f"cannot use {backend.file_path}: {exc.strerror}") from None


def _is_encrypted_file(backend: Any) -> bool:
    """keyrings.cryptfile / keyrings.alt encrypted file backends (they take a ``keyring_key``)."""
    return any(c.__name__ == "EncryptedKeyring" for c in type(backend).__mro__)


def _native_backends() -> list[KeyringBackend]:
    """OS keyrings (keyring's own backends, not the chainer, fail or null) viable right now.

    Viability is asked afresh each time (keyring caches its own list for the process): the
    Secret Service may have started, or ``$DBUS_SESSION_BUS_ADDRESS`` changed, since.
    """
    from keyring import backend as kb
    from keyring.backends import chainer, fail, null

    kb.get_all_keyring()  # loads the backend plugins once
    out: list[KeyringBackend] = []
    for cls in kb.KeyringBackend.get_viable_backends():
        if not cls.__module__.startswith("keyring.backends.") or issubclass(
            cls, chainer.ChainerBackend | fail.Keyring | null.Keyring
        ):
            continue
        try:
            out.append(cls())
        except Exception:  # a backend that cannot be built is not available
            continue
    return out


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").strip()
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
