"""Real mail servers on loopback for the email channel's tests.

`SmtpRecorder`: an aiosmtpd server that records every email it accepts and can be told to
refuse the next ones with a code (451: try again later; 550: never)::

    with SmtpRecorder() as smtp:
        smtp.fail_next(451)
        ...
        smtp.wait_for(lambda mails: len(mails) >= 1, timeout=10)

`Dovecot`: Debian's Dovecot as a child process with a configuration of its own in a temporary
directory (IMAP on a free loopback port, no TLS, one user from a passwd file, Maildir), its
mail owned by an unprivileged user that exists; `append` delivers an email into the user's
INBOX, `unseen` and `seen` read the flags back over IMAP.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller

from supportbot.devstack.dovecot import dovecot_path

# --- SMTP -------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return cast(EmailMessage, BytesParser(policy=policy.default).parsebytes(self.raw))

    def header(self, name: str) -> str:
        return str(self.message.get(name, "") or "")

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return str(part.get_content()) if part is not None else ""


class _RecordingHandler:
    def __init__(self, owner: SmtpRecorder) -> None:
        self.owner = owner

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return self.owner._received(envelope)


class SmtpRecorder:
    def __init__(self) -> None:
        self.port = _free_port()
        self.mails: list[ReceivedMail] = []
        self.refused: list[int] = []
        self._failures: list[int] = []
        self._cond = threading.Condition()
        self._controller = Controller(_RecordingHandler(self), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpRecorder:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def fail_next(self, code: int, times: int = 1) -> None:
        with self._cond:
            self._failures.extend([code] * times)

    def _received(self, envelope: Any) -> str:
        with self._cond:
            if self._failures:
                code = self._failures.pop(0)
                self.refused.append(code)
                self._cond.notify_all()
                return f"{code} Refused for the test"
            raw = envelope.original_content or envelope.content
            self.mails.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), raw))
            self._cond.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(
        self, condition: Callable[[list[ReceivedMail]], Any], timeout: float = 15
    ) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(list(self.mails)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s; SMTP got {len(self.mails)} mails"
                    )
                self._cond.wait(left)
            return list(self.mails)


# --- IMAP -------------------------------------------------------------------------------------

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = {uid}
last_valid_uid = 0
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def _mail_owner() -> tuple[int, int, str, str]:
    """Who owns the mail: as root, `nobody` (and Dovecot's own service users); otherwise the
    user running the tests."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return me.pw_uid, me.pw_gid, me.pw_name, me.pw_name
    nobody = pwd.getpwnam("nobody")
    login = "dovenull" if _user_exists("dovenull") else "nobody"
    internal = "dovecot" if _user_exists("dovecot") else "nobody"
    return nobody.pw_uid, nobody.pw_gid, login, internal


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class Dovecot:
    def __init__(self, user: str = "support@shop.example", password: str = "imap-test-pw") -> None:
        self.user = user
        self.password = password
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="supportbot-dovecot-"))
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Dovecot:
        uid, gid, login_user, internal_user = _mail_owner()
        self.root.chmod(0o755)
        for name in ("run", "state", "mail", "home"):
            (self.root / name).mkdir()
        for name in ("mail", "home"):
            os.chown(self.root / name, uid, gid)
        (self.root / "users").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        config = self.root / "dovecot.conf"
        config.write_text(
            _CONFIG.format(
                root=self.root,
                port=self.port,
                uid=uid,
                gid=gid,
                login_user=login_user,
                internal_user=internal_user,
            )
        )
        self._process = subprocess.Popen(
            [str(dovecot_path()), "-F", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log_text()}")

    def log_text(self) -> str:
        log = self.root / "dovecot.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        if self._process is not None and self._process.poll() is not None and self._process.stderr:
            text += self._process.stderr.read().decode(errors="replace")
        return text

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=5)
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _client(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        imap.login(self.user, self.password)
        imap.select("INBOX")
        return imap

    def append(self, raw: bytes) -> None:
        """Deliver an email into the user's INBOX, unread."""
        imap = self._client()
        try:
            status, _ = imap.append("INBOX", "", imaplib.Time2Internaldate(time.time()), raw)
            assert status == "OK"
        finally:
            imap.logout()

    def _search(self, criterion: str) -> list[bytes]:
        imap = self._client()
        try:
            status, data = imap.uid("SEARCH", criterion)
            assert status == "OK"
            return data[0].split() if data and data[0] else []
        finally:
            imap.logout()

    def mark_all_unseen(self) -> None:
        imap = self._client()
        try:
            status, _ = imap.uid("STORE", "1:*", "-FLAGS", "(\\Seen)")
            assert status == "OK"
        finally:
            imap.logout()

    def unseen(self) -> int:
        return len(self._search("UNSEEN"))

    def seen(self) -> int:
        return len(self._search("SEEN"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
