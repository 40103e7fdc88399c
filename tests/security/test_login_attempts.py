"""Login attempts are paced before their password is checked (~0.5 s of CPU each, for an
unknown user too): per client address and per process (apps/accounts/throttles.py)."""

from __future__ import annotations

import django.contrib.auth.forms as auth_forms
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connections
from django.test import Client
from rest_framework import throttling

from apps.accounts import throttles
from apps.accounts.throttles import HISTORIES, LOGIN_HISTORIES
from telemetry_site.guard import policy_for

LOGIN = "/admin/login/"


@pytest.fixture
def checks(monkeypatch, settings):
    """The password checks Django's login form runs (counted, then run as always), with a
    cheap hasher for the test's speed, and a clean slate of histories."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    seen: list[str] = []
    real = auth_forms.authenticate

    def counted(request=None, **credentials):
        seen.append(credentials.get("username", ""))
        return real(request, **credentials)

    monkeypatch.setattr(auth_forms, "authenticate", counted)
    HISTORIES.clear()
    LOGIN_HISTORIES.clear()
    yield seen
    HISTORIES.clear()
    LOGIN_HISTORIES.clear()


def rates(monkeypatch, per_address: str, per_process: str) -> None:
    # the rates are read once, when DRF's throttling module loads: set them where it looks
    monkeypatch.setattr(
        throttling.SimpleRateThrottle,
        "THROTTLE_RATES",
        {"logins": per_address, "logins-process": per_process},
    )


def attempt(address: str, username: str = "nobody", password: str = "guess", **headers):
    return Client(REMOTE_ADDR=address, **headers).post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}
    )


@pytest.mark.django_db
def test_attempts_past_the_address_rate_are_refused_before_the_password_is_checked(
    checks, monkeypatch
):
    rates(monkeypatch, "3/min", "100/min")
    codes = [attempt("10.0.0.1").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]  # 200: the form again, "wrong password"
    assert checks == ["nobody"] * 3
    refused = attempt("10.0.0.1")
    assert 0 < int(refused["Retry-After"]) <= 60
    assert b"too many login attempts from your address" in refused.content
    assert Client(REMOTE_ADDR="10.0.0.1").get(LOGIN).status_code == 200  # the page: not paced


@pytest.mark.django_db
def test_each_address_has_its_own_attempts_and_the_process_bounds_them_all(checks, monkeypatch):
    rates(monkeypatch, "2/min", "5/min")
    clock = [1_000.0]
    monkeypatch.setattr(throttling.SimpleRateThrottle, "timer", lambda self: clock[0])
    got = {a: [attempt(a).status_code for _ in range(2)] for a in ("10.0.0.1", "10.0.0.2")}
    assert got == {"10.0.0.1": [200, 200], "10.0.0.2": [200, 200]}
    assert attempt("10.0.0.3").status_code == 200  # the process's fifth
    for _ in range(3):  # refused by the process's rate: the address's own are not spent
        refused = attempt("10.0.0.4")
        assert refused.status_code == 429 and b"on this server" in refused.content
    assert len(checks) == 5
    clock[0] += 61  # a minute on: the process has room again, and 10.0.0.4 its two
    assert [attempt("10.0.0.4").status_code for _ in range(3)] == [200, 200, 429]
    assert len(checks) == 7


@pytest.mark.django_db
def test_a_forwarded_for_the_client_writes_gives_it_no_new_attempts(checks, monkeypatch):
    rates(monkeypatch, "2/min", "100/min")
    codes = [
        attempt("10.0.0.9", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code for i in range(4)
    ]
    assert codes == [200, 200, 429, 429] and len(checks) == 2


@pytest.mark.django_db
def test_a_flood_of_reads_from_new_addresses_does_not_push_the_login_count_out(checks, monkeypatch):
    """The read histories are bounded and drop their least recently seen callers; the
    login counts are kept apart, so the process's bound on password checks holds."""
    rates(monkeypatch, "100/min", "2/min")
    monkeypatch.setattr(throttling.ScopedRateThrottle, "THROTTLE_RATES", {"reads": "5/min"})
    monkeypatch.setattr(HISTORIES, "max_bytes", 64 * 1024)
    assert [attempt(f"10.1.0.{i}").status_code for i in range(3)] == [200, 200, 429]
    from django.test import RequestFactory
    from rest_framework.request import Request
    from rest_framework.views import APIView

    class Reads(APIView):
        throttle_scope = "reads"

    for i in range(2_000):  # ~800 KB of read histories: far past the bound
        request = Request(RequestFactory().get("/", REMOTE_ADDR=f"2001:db8::{i:x}"))
        assert throttles.ScopedRateThrottle().allow_request(request, Reads())
    assert HISTORIES.bytes <= HISTORIES.max_bytes
    assert attempt("10.1.0.9").status_code == 429 and len(checks) == 2


@pytest.mark.django_db
def test_the_right_password_still_logs_in_and_the_guard_takes_the_form(
    checks, monkeypatch, settings
):
    rates(monkeypatch, "3/min", "100/min")
    get_user_model().objects.create_superuser("ops", "ops@example.com", "s3cret-pass")
    assert attempt("10.0.0.5", "ops", "wrong").status_code == 200
    ok = attempt("10.0.0.5", "ops", "s3cret-pass")
    assert ok.status_code == 302 and ok["Location"] == "/admin/"
    form = policy_for("POST", LOGIN)
    assert (form.limit, form.access) == (settings.DATA_UPLOAD_MAX_MEMORY_SIZE, "")


@pytest.mark.django_db(transaction=True)
def test_password_checks_run_one_at_a_time(checks, monkeypatch):
    """Two attempts at once: the second's check waits for the first's, so checks let
    through by the rates take at most one core."""
    import threading
    import time

    rates(monkeypatch, "100/min", "100/min")
    running, most = [0], [0]
    real = auth_forms.authenticate  # the fixture's counting wrapper

    def overlapping(request=None, **credentials):
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.05)  # not a wait: a check long enough for the other to arrive
        try:
            return real(request, **credentials)
        finally:
            running[0] -= 1

    monkeypatch.setattr(auth_forms, "authenticate", overlapping)
    codes: list[int] = []

    def send(address: str) -> None:
        try:
            codes.append(attempt(address).status_code)
        finally:
            connections.close_all()  # this thread's own, as a request's thread ends

    senders = [
        threading.Thread(target=send, args=(a,)) for a in ("10.2.0.1", "10.2.0.2", "10.2.0.3")
    ]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    assert codes == [200, 200, 200] and len(checks) == 3 and most[0] == 1


@pytest.mark.django_db
def test_retry_after_is_the_longer_wait_of_the_two_rates(checks, monkeypatch):
    rates(monkeypatch, "2/min", "3/hour")
    clock = [1_000.0]
    monkeypatch.setattr(throttling.SimpleRateThrottle, "timer", lambda self: clock[0])
    assert [attempt(a).status_code for a in ("10.3.0.1", "10.3.0.1", "10.3.0.2")] == [200] * 3
    clock[0] += 10  # the address is full for 50 s more, the process for 3,590 s
    refused = attempt("10.3.0.1")
    assert refused.status_code == 429 and int(refused["Retry-After"]) == 3590
    assert b"on this server" in refused.content


PASSWORD_CHANGE = "/admin/password_change/"


def change(client: Client, old: str = "wrong"):
    new = "a-New-passphrase-91"
    return client.post(
        PASSWORD_CHANGE, {"old_password": old, "new_password1": new, "new_password2": new}
    )


@pytest.mark.django_db
def test_password_changes_are_paced_as_logins(checks, monkeypatch):
    """A staff user's password change checks the old password (~0.5 s, as a login does):
    past the address's rate, 429 before it is checked; anonymous posts are sent to the
    login page and count nothing."""
    rates(monkeypatch, "2/min", "100/min")
    checked: list[str] = []
    real = AbstractBaseUser.check_password

    def counted(self, raw):
        checked.append(raw)
        return real(self, raw)

    monkeypatch.setattr(AbstractBaseUser, "check_password", counted)
    for _ in range(3):
        anonymous = change(Client(REMOTE_ADDR="10.0.0.9"))
        assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    staff = get_user_model().objects.create_user("keeper", password="right-one", is_staff=True)
    client = Client(REMOTE_ADDR="10.0.0.9")
    client.force_login(staff)
    codes = [change(client).status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]  # 200: the form again, "old password incorrect"
    assert checked == ["wrong", "wrong"]
    assert b"too many login attempts from your address" in change(client).content
    assert client.get(PASSWORD_CHANGE).status_code == 200  # the form itself: not paced
    other = Client(REMOTE_ADDR="10.0.0.10")  # another address: its own attempts
    other.force_login(staff)
    done = change(other, old="right-one")
    assert done.status_code == 302 and done["Location"] == "/admin/password_change/done/"
    staff.refresh_from_db()
    assert staff.check_password("a-New-passphrase-91")
