"""The sign-in store on SQLite and a real PostgreSQL: passwords, sessions, API tokens, the throttle.

The clock is the store's own (`FixedClock`), moved by hand: nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from report_platform.registry.db import init_registry
from report_platform.registry.errors import BadRequest, NotFound
from report_platform.registry.service import ReportService
from report_platform.registry.signin import SignInRefused, SignInStore, SignInThrottled, Throttle
from report_platform_tests.registry.conftest import ADMIN, OWNER, FixedClock, seed, wipe
from report_platform_tests.servers.postgres import postgres_server  # noqa: F401

PASSWORD = "correct horse battery staple"
CLIENT = "192.0.2.10"


class CountingHasher(PasswordHasher):
    """Cheap argon2id parameters, and a count of the hashes verified (the work every attempt costs)."""

    def __init__(self, **parameters: int) -> None:
        super().__init__(**({"time_cost": 1, "memory_cost": 8, "parallelism": 1} | parameters))
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request: pytest.FixtureRequest, tmp_path) -> str:  # noqa: ANN001
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    server = request.getfixturevalue("postgres_server")
    wipe(server.url)
    return server.url


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 3, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def factory(registry_url: str) -> Iterator[sessionmaker]:
    sessions = init_registry(registry_url)
    seed(ReportService(sessions))
    yield sessions
    sessions.kw["bind"].dispose()


@pytest.fixture
def store(factory: sessionmaker, clock: FixedClock, hasher: CountingHasher) -> SignInStore:
    store = SignInStore(factory, clock=clock, hasher=hasher)
    store.set_password(OWNER, PASSWORD)
    return store


def rows(factory: sessionmaker, sql: str) -> list[tuple]:
    with factory() as s:
        return [tuple(r) for r in s.execute(text(sql))]


def test_a_password_is_kept_as_an_argon2id_hash_and_nowhere_in_clear(factory: sessionmaker) -> None:
    SignInStore(factory).set_password(OWNER, PASSWORD)  # argon2-cffi's default parameters
    [(stored,)] = rows(factory, "SELECT password_hash FROM user_passwords")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in stored


def test_signing_in_opens_a_session_whose_token_is_stored_only_as_its_sha256(
    store: SignInStore, factory: sessionmaker
) -> None:
    signed = store.sign_in("  Owner@ACME.example ", PASSWORD, CLIENT)
    assert signed.email == OWNER and len(signed.token) >= 40 and len(signed.csrf_token) >= 40
    [(digest, client)] = rows(factory, "SELECT token_sha256, client FROM sign_in_sessions")
    import hashlib

    assert digest == hashlib.sha256(signed.token.encode()).hexdigest() and client == CLIENT
    who = store.session(signed.token)
    assert who is not None and (who.email, who.via, who.csrf_token) == (OWNER, "session", signed.csrf_token)
    assert store.session("not-a-token") is None


def test_unknown_address_no_password_and_wrong_password_get_one_answer_after_one_hash_each(
    store: SignInStore, hasher: CountingHasher, factory: sessionmaker
) -> None:
    for email, password in ((OWNER, "wrong password here"), ("nobody@acme.example", PASSWORD), (ADMIN, PASSWORD)):
        before = hasher.verified
        with pytest.raises(SignInRefused) as refused:
            store.sign_in(email, password, CLIENT)
        assert str(refused.value) == "wrong e-mail address or password"
        assert hasher.verified == before + 1
    before = hasher.verified
    store.sign_in(OWNER, PASSWORD, CLIENT)
    assert hasher.verified == before + 1
    assert [(e.email, e.outcome, e.reason) for e in reversed(store.events())] == [
        (OWNER, "failure", "wrong password"),
        ("nobody@acme.example", "failure", "unknown e-mail address"),
        (ADMIN, "failure", "no password set"),
        (OWNER, "success", None),
    ]
    recorded = " ".join(str(v) for row in rows(factory, "SELECT * FROM auth_events") for v in row)
    assert PASSWORD not in recorded and "wrong password here" not in recorded


def test_a_hash_made_with_other_parameters_is_replaced_at_the_next_sign_in(
    factory: sessionmaker, clock: FixedClock
) -> None:
    SignInStore(factory, clock=clock, hasher=CountingHasher(time_cost=1)).set_password(OWNER, PASSWORD)
    [(old,)] = rows(factory, "SELECT password_hash FROM user_passwords")
    stronger = SignInStore(factory, clock=clock, hasher=CountingHasher(time_cost=2))
    stronger.sign_in(OWNER, PASSWORD, CLIENT)
    [(new,)] = rows(factory, "SELECT password_hash FROM user_passwords")
    assert ",t=1," in old and ",t=2," in new
    stronger.sign_in(OWNER, PASSWORD, CLIENT)  # and the new hash signs in


def test_a_session_ends_after_its_idle_time_without_use(factory: sessionmaker, clock: FixedClock) -> None:
    store = SignInStore(factory, clock=clock, hasher=CountingHasher(), idle=timedelta(minutes=30))
    store.set_password(OWNER, PASSWORD)
    token = store.sign_in(OWNER, PASSWORD, CLIENT).token
    clock.now += timedelta(minutes=29)
    assert store.session(token) is not None  # used: the idle time starts again
    clock.now += timedelta(minutes=29)
    assert store.session(token) is not None
    clock.now += timedelta(minutes=30)
    assert store.session(token) is None
    assert store.sessions(OWNER) == []


def test_use_keeps_a_session_alive_only_until_its_absolute_limit(factory: sessionmaker, clock: FixedClock) -> None:
    store = SignInStore(
        factory, clock=clock, hasher=CountingHasher(), idle=timedelta(minutes=30), max_age=timedelta(hours=12)
    )
    store.set_password(OWNER, PASSWORD)
    signed = store.sign_in(OWNER, PASSWORD, CLIENT)
    assert signed.expires_at == clock.now + timedelta(hours=12)
    for _ in range(12 * 4 - 1):
        clock.now += timedelta(minutes=15)
        assert store.session(signed.token) is not None
    clock.now += timedelta(minutes=15)
    assert store.session(signed.token) is None


def test_signing_out_ends_that_session_only(store: SignInStore) -> None:
    first, second = (store.sign_in(OWNER, PASSWORD, CLIENT) for _ in range(2))
    assert store.sign_out(first.token) is True
    assert store.session(first.token) is None and store.session(second.token) is not None
    assert store.sign_out(first.token) is False
    assert [s.id for s in store.sessions(OWNER)] == [second.session_id]


def test_a_new_password_ends_every_session_of_the_user_and_the_old_one_no_longer_signs_in(store: SignInStore) -> None:
    tokens = [store.sign_in(OWNER, PASSWORD, CLIENT).token for _ in range(3)]
    assert store.set_password(OWNER, "another long passphrase").sessions_ended == 3
    assert all(store.session(token) is None for token in tokens)
    with pytest.raises(SignInRefused):
        store.sign_in(OWNER, PASSWORD, CLIENT)
    assert store.session(store.sign_in(OWNER, "another long passphrase", CLIENT).token) is not None


def test_a_changed_password_revokes_the_users_api_tokens_and_a_first_one_does_not(store: SignInStore) -> None:
    owners = [store.issue_token(OWNER, f"script {i}").token for i in range(2)]
    admins = store.issue_token(ADMIN, "dashboards").token  # ADMIN has no password yet
    assert store.set_password(OWNER, "another long passphrase").tokens_revoked == 2
    assert all(store.token_user(token) is None for token in owners)
    assert all(t.revoked_at is not None for t in store.tokens(OWNER))
    assert store.set_password(ADMIN, "a first passphrase").tokens_revoked == 0
    assert store.token_user(admins) is not None
    assert store.token_user(store.issue_token(OWNER, "after the change").token) is not None


def test_signing_out_everywhere_ends_every_session(store: SignInStore) -> None:
    tokens = [store.sign_in(OWNER, PASSWORD, CLIENT).token for _ in range(2)]
    assert store.sign_out_everywhere(OWNER) == 2
    assert all(store.session(token) is None for token in tokens)
    with pytest.raises(NotFound, match="no user nobody@acme.example"):
        store.sign_out_everywhere("nobody@acme.example")


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("eleven char", "a password needs at least 12 characters, got 11"),
        ("x" * 1025, "a password may have at most 1024 characters, got 1025"),
    ],
)
def test_a_password_too_short_or_too_long_is_refused(store: SignInStore, password: str, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        store.set_password(OWNER, password)
    assert str(refused.value) == message
    store.sign_in(OWNER, PASSWORD, CLIENT)  # the old password stands
    store.set_password(OWNER, "x" * 1024)


def test_an_api_token_is_shown_once_kept_hashed_named_and_revocable(
    store: SignInStore, factory: sessionmaker, clock: FixedClock
) -> None:
    issued = store.issue_token(OWNER, "nightly export")
    assert issued.token.startswith("rpk_") and issued.id.startswith("tok_")
    stored = " ".join(str(v) for row in rows(factory, "SELECT * FROM api_tokens") for v in row)
    assert issued.token not in stored and "nightly export" in stored
    clock.now += timedelta(hours=1)
    who = store.token_user(issued.token)
    assert who is not None and (who.email, who.via, who.token_id, who.csrf_token) == (OWNER, "token", issued.id, None)
    [listed] = store.tokens(OWNER)
    assert (listed.name, listed.last_used_at, listed.revoked_at) == ("nightly export", clock.now, None)
    assert store.revoke_token(issued.id) is True
    assert store.token_user(issued.token) is None
    assert store.revoke_token(issued.id) is False
    with pytest.raises(NotFound):
        store.revoke_token("tok_nothere000")
    with pytest.raises(BadRequest):
        store.issue_token(OWNER, "line\nbreak")


def test_failed_sign_ins_for_one_address_are_throttled_with_the_seconds_to_wait(
    store: SignInStore, clock: FixedClock
) -> None:
    for minute in range(5):
        clock.now += timedelta(minutes=1)
        with pytest.raises(SignInRefused):
            store.sign_in(OWNER, f"wrong guess {minute}", f"198.51.100.{minute}")
    # The first failure was 4 minutes ago: the window of 15 minutes lets the next attempt in 11 minutes.
    with pytest.raises(SignInThrottled) as throttled:
        store.sign_in(OWNER, PASSWORD, "203.0.113.9")  # the right password, from elsewhere: still refused
    assert throttled.value.retry_after == 11 * 60
    assert store.events(OWNER)[0].outcome == "throttled"
    clock.now += timedelta(minutes=11) - timedelta(seconds=1)
    with pytest.raises(SignInThrottled) as throttled:
        store.sign_in(OWNER, PASSWORD, CLIENT)
    assert throttled.value.retry_after == 1
    clock.now += timedelta(seconds=1)
    store.sign_in(OWNER, PASSWORD, CLIENT)


def test_a_success_clears_the_count_for_its_address(store: SignInStore) -> None:
    for _ in range(4):
        with pytest.raises(SignInRefused):
            store.sign_in(OWNER, "wrong guess", CLIENT)
    store.sign_in(OWNER, PASSWORD, CLIENT)
    for _ in range(4):
        with pytest.raises(SignInRefused):
            store.sign_in(OWNER, "wrong guess", CLIENT)
    store.sign_in(OWNER, PASSWORD, CLIENT)


def test_failed_sign_ins_from_one_client_are_throttled_whatever_the_address(
    factory: sessionmaker, clock: FixedClock
) -> None:
    store = SignInStore(factory, clock=clock, hasher=CountingHasher(), throttle=Throttle(per_client=20))
    store.set_password(OWNER, PASSWORD)
    for i in range(20):
        with pytest.raises(SignInRefused):
            store.sign_in(f"guess{i}@acme.example", PASSWORD, CLIENT)  # one failure per address
    with pytest.raises(SignInThrottled) as throttled:
        store.sign_in(OWNER, PASSWORD, CLIENT)
    assert throttled.value.retry_after == 15 * 60
    store.sign_in(OWNER, PASSWORD, "192.0.2.11")  # another client is not held up
    assert store.events()[0].outcome == "success" and store.events()[1].reason == "too many failures from this client"


def test_two_processes_count_the_same_failures(factory: sessionmaker, registry_url: str, clock: FixedClock) -> None:
    """Two stores over their own engines (as two console processes) share the count."""
    first = SignInStore(factory, clock=clock, hasher=CountingHasher())
    first.set_password(OWNER, PASSWORD)
    other = init_registry(registry_url)
    try:
        second = SignInStore(other, clock=clock, hasher=CountingHasher())
        for store in (first, second, first, second, first):
            with pytest.raises(SignInRefused):
                store.sign_in(OWNER, "wrong guess", CLIENT)
        with pytest.raises(SignInThrottled):
            second.sign_in(OWNER, PASSWORD, CLIENT)
    finally:
        other.kw["bind"].dispose()
