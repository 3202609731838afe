#!/usr/bin/python3
"""graph_mock.py -- an offline Microsoft identity platform + Graph v1.0 mock.

Standard library only; shares no code with weir or its connectors.  Built
from the documented behaviour in /work/shared/reference/vendor-apis.md
(sections 1-4).  Binds 127.0.0.1, writes its port to --port-file once
listening (temp file renamed into place), serves many keep-alive
connections at once (one thread each) and exits on SIGTERM, or when its
parent dies with --exit-with-parent.  tests/mocks/README.md is the manual;
in short:

Identity
  POST /{tenant}/oauth2/v2.0/token      client-credentials grant (form or
                                        HTTP Basic client auth)
Graph (every call needs Authorization: Bearer <token from above>)
  GET  /v1.0/users                      $top (100, max 999), $select,
                                        @odata.nextLink with $skiptoken
  GET  /v1.0/users/{id}
  GET  /v1.0/users/delta                nextLink pages, then deltaLink
                                        ($deltatoken); 410 when expired
  GET  /v1.0/groups                     same paging as /users
  POST /v1.0/$batch                     <= 20 requests, answered per item
Control (no auth; for tests)
  POST /_control/faults                 scripted fault sequences
  GET  /_control/faults                 what is left of them
  POST /_control/expire_tokens          every issued access token expires
  POST /_control/expire_delta_tokens    every delta/skip token -> 410
  POST /_control/users                  create / update / delete users
  GET  /_control/users                  the live users (the truth)
  POST /_control/config                 token_lifetime, delta_page_size
  GET  /_control/stats                  counts, concurrency, retry gaps
  POST /_control/reset                  back to the state at start-up
"""

import argparse
import base64
import binascii
import copy
import json
import math
import os
import random
import secrets
import signal
import sys
import threading
import time
import uuid
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
USER_PROPERTIES = ("businessPhones", "displayName", "givenName", "jobTitle",
                   "mail", "mobilePhone", "officeLocation", "preferredLanguage",
                   "surname", "userPrincipalName", "id")
GROUP_PROPERTIES = ("id", "displayName", "description", "mail", "mailEnabled",
                    "mailNickname", "securityEnabled", "groupTypes")
MAX_TOP = 999
DEFAULT_TOP = 100
MAX_BATCH = 20
LOG_KEEP = 2000

GIVEN = ("Adele", "Alex", "Diego", "Grady", "Henrietta", "Isaiah", "Johanna",
         "Joni", "Lee", "Lidia", "Lynne", "Megan", "Miriam", "Nestor", "Patti",
         "Pradeep", "Ravi", "Sakura", "Tomas", "Yuki")
SURNAMES = ("Vance", "Wilber", "Zeller", "Archie", "Gonzales", "Langer",
            "Lambert", "Sherman", "Gu", "Holloway", "Fernandez", "Bowen",
            "Wilkins", "Nakamura", "Fernandes", "Gupta", "Sato", "Novak",
            "Okafor", "Silva")
TITLES = ("Accountant", "Developer", "Designer", "Director", "Engineer",
          "Marketing Assistant", "Product Manager", "Retail Manager",
          "Sales Representative", "Support Engineer")
OFFICES = ("12/1110", "18/2111", "20/1101", "131/1104", "19/3123", "Remote")
LANGUAGES = ("en-US", "en-GB", "fr-FR", "de-DE", "ja-JP", "pt-BR")

# Default error codes per status (Graph error bodies, /graph/errors).
STATUS_CODES = {
    400: ("BadRequest", "Bad request."),
    401: ("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
    403: ("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    404: ("Request_ResourceNotFound", "Resource does not exist."),
    409: ("Conflict", "Conflict."),
    410: ("syncStateNotFound", "The sync state generation is not found."),
    412: ("PreconditionFailed", "Precondition failed."),
    424: ("FailedDependency", "The request depends on a request that failed."),
    429: ("TooManyRequests", "Please retry again later."),
    500: ("generalException", "An unspecified error has occurred."),
    502: ("badGateway", "Bad gateway."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable."),
    504: ("gatewayTimeout", "The gateway timed out."),
}


class GraphError(Exception):
    """A Graph error response: raised inside handlers, turned into a body."""

    def __init__(self, status, code=None, message=None, headers=()):
        default_code, default_message = STATUS_CODES.get(status, ("UnknownError", "Error."))
        super().__init__(message or default_message)
        self.status = status
        self.code = code or default_code
        self.message = message or default_message
        self.headers = list(headers)


def now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def graph_error_body(status, code, message):
    inner = {"date": now_iso(), "request-id": str(uuid.uuid4()),
             "client-request-id": str(uuid.uuid4())}
    if status == 429:
        inner.update({"code": "429", "status": "429"})
    return {"error": {"code": code, "message": message, "innerError": inner}}


def encode_token(state):
    """Opaque paging / delta tokens: the client must treat them as such."""
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token):
    try:
        pad = "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(token + pad))
    except (ValueError, binascii.Error):
        return None
    return value if isinstance(value, dict) else None


def qfirst(query, name):
    values = query.get(name)
    return values[0] if values else None


def build_query(pairs):
    """'$top=5&$skiptoken=...': keys kept literal ('$'), values encoded."""
    return "&".join("%s=%s" % (k, quote(str(v), safe=",")) for k, v in pairs if v is not None)


# ---------------------------------------------------------------------------
# The directory: users, groups and the change log delta queries read.
# ---------------------------------------------------------------------------

class Directory:
    """Users keyed by id.  Every change bumps `seq` and stamps the user with
    it; deletions leave a tombstone, so a delta round is "every user whose
    stamp lies in (from, to]" in creation order."""

    def __init__(self, n_users, seed, domain):
        self.rng = random.Random(seed)
        self.domain = domain
        self.seq = 0
        self.users = {}
        self.order = []          # ids in creation order (ordinal = index + 1)
        self.ordinal = {}
        for _ in range(n_users):
            self._insert(self._generate(), stamp=0)
        self.groups = [self._group(i) for i in range(max(3, n_users // 50))]

    def _guid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _generate(self, props=None):
        n = len(self.order) + 1
        given = GIVEN[self.rng.randrange(len(GIVEN))]
        surname = SURNAMES[self.rng.randrange(len(SURNAMES))]
        props = props or {}
        if isinstance(props.get("displayName"), str) and props["displayName"].strip():
            given, _, surname = props["displayName"].strip().partition(" ")
            surname = surname or given
        upn = "%s.%s%d@%s" % ("".join(c for c in given.lower() if c.isalnum()),
                              "".join(c for c in surname.lower() if c.isalnum()), n, self.domain)
        user = {
            "id": self._guid(),
            "businessPhones": [],
            "displayName": "%s %s" % (given, surname),
            "givenName": given,
            "surname": surname,
            "jobTitle": TITLES[self.rng.randrange(len(TITLES))],
            "mail": upn,
            "mobilePhone": None,
            "officeLocation": OFFICES[self.rng.randrange(len(OFFICES))],
            "preferredLanguage": LANGUAGES[self.rng.randrange(len(LANGUAGES))],
            "userPrincipalName": upn,
        }
        for k, v in props.items():
            if k != "id":
                user[k] = v
        return user

    def _group(self, i):
        name = "Team %02d" % (i + 1)
        nick = "team%02d" % (i + 1)
        return {"id": self._guid(), "displayName": name,
                "description": "Mock group %d" % (i + 1),
                "mail": "%s@%s" % (nick, self.domain), "mailEnabled": True,
                "mailNickname": nick, "securityEnabled": False,
                "groupTypes": ["Unified"]}

    def _insert(self, user, stamp):
        self.order.append(user["id"])
        self.ordinal[user["id"]] = len(self.order)
        self.users[user["id"]] = {"data": user, "seq": stamp, "deleted": False}

    def live(self, uid):
        rec = self.users.get(uid)
        return rec if rec and not rec["deleted"] else None

    def create(self, props):
        self.seq += 1
        user = self._generate(props)
        self._insert(user, self.seq)
        return user["id"]

    def update(self, uid, props):
        rec = self.live(uid)
        if rec is None:
            raise KeyError(uid)
        self.seq += 1
        for k, v in props.items():
            if k != "id":
                rec["data"][k] = v
        rec["seq"] = self.seq

    def delete(self, uid):
        rec = self.live(uid)
        if rec is None:
            raise KeyError(uid)
        self.seq += 1
        rec["deleted"] = True
        rec["seq"] = self.seq

    def live_users(self, after=0, limit=None):
        """(users, last ordinal, more?) in creation order after ordinal."""
        out = []
        for uid in self.order[after:]:
            rec = self.users[uid]
            if rec["deleted"]:
                continue
            if limit is not None and len(out) == limit:
                return out, self.ordinal[out[-1]["id"]], True
            out.append(rec["data"])
        return out, self.ordinal[out[-1]["id"]] if out else after, False

    def changed(self, since, until, after, limit, with_deleted=True):
        """Records stamped in (since, until] after ordinal: (recs, last, more)."""
        out = []
        last = after
        for uid in self.order[after:]:
            rec = self.users[uid]
            if not since < rec["seq"] <= until or (rec["deleted"] and not with_deleted):
                continue
            if len(out) == limit:
                return out, last, True
            out.append(rec)
            last = self.ordinal[uid]
        return out, last, False


# ---------------------------------------------------------------------------
# Shared mutable state: one lock for all of it.
# ---------------------------------------------------------------------------

class FaultRule:
    def __init__(self, spec):
        if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
            raise ValueError("a fault rule needs a 'path' string")
        seq = spec.get("sequence")
        if not isinstance(seq, list) or not seq:
            raise ValueError("a fault rule needs a non-empty 'sequence' list")
        self.path = spec["path"]
        self.method = spec.get("method")
        self.scope = spec.get("scope", "request")
        if self.scope not in ("request", "batch_item"):
            raise ValueError("scope must be 'request' or 'batch_item'")
        self.steps = []
        for step in seq:
            if not isinstance(step, dict):
                raise ValueError("each step of a sequence is an object")
            for _ in range(int(step.get("times", 1))):
                self.steps.append(step)

    def matches(self, scope, method, path):
        if scope != self.scope or not self.steps:
            return False
        if self.method and self.method.upper() != method:
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def describe(self):
        return {"path": self.path, "method": self.method, "scope": self.scope,
                "remaining": self.steps}


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.started = time.monotonic()
        self.reset()

    def reset(self):
        with self.lock:
            a = self.args
            self.dir = Directory(a.users, a.seed, a.domain)
            self.token_lifetime = a.token_lifetime
            self.delta_page_size = a.delta_page_size
            self.tokens = {}         # access token -> monotonic expiry
            self.delta_epoch = 1     # bumped by expire_delta_tokens
            self.faults = []
            self.requests = {}
            self.batch_items = {}
            self.statuses = {}
            self.in_flight = 0
            self.max_concurrent = 0
            self.tokens_issued = 0
            self.token_requests = 0
            self.faults_served = 0
            self.pending_gaps = {}   # request key -> (sent at, retry-after, status)
            self.retry_gaps = []
            self.log = []
            self.seen = 0

    # -- tokens ------------------------------------------------------------

    def issue_token(self):
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0." + secrets.token_urlsafe(32)
        self.tokens[token] = time.monotonic() + self.token_lifetime
        self.tokens_issued += 1
        return token

    def token_state(self, token):
        """'ok', 'expired' or 'unknown'."""
        exp = self.tokens.get(token)
        if exp is None:
            return "unknown"
        return "ok" if time.monotonic() < exp else "expired"

    def expire_tokens(self):
        for token in self.tokens:
            self.tokens[token] = 0.0

    # -- faults and retry gaps ---------------------------------------------

    def take_fault(self, scope, method, path):
        for rule in self.faults:
            if rule.matches(scope, method, path):
                self.faults_served += 1
                return rule.steps.pop(0)
        return None

    def note_retry(self, key, kind):
        """A request arrived: if the previous one with the same key was a
        fault, record how long the client waited (the mock's clock)."""
        prev = self.pending_gaps.pop(key, None)
        if prev is None:
            return
        sent, retry_after, status = prev
        self.retry_gaps.append({
            "kind": kind, "method": key[1], "path": key[2], "status": status,
            "retry_after": retry_after, "gap": time.monotonic() - sent})

    def note_fault_sent(self, key, retry_after, status):
        self.pending_gaps[key] = (time.monotonic(), retry_after, status)

    def record(self, method, path, query, status, fault):
        self.seen += 1
        self.statuses.setdefault(path, {})
        self.statuses[path][str(status)] = self.statuses[path].get(str(status), 0) + 1
        self.log.append({"n": self.seen, "method": method, "path": path,
                         "query": query, "status": status, "fault": fault,
                         "t": round(time.monotonic() - self.started, 6)})
        del self.log[:-LOG_KEEP]

    def stats(self):
        return {
            "requests": dict(self.requests),
            "batch_items": dict(self.batch_items),
            "statuses": copy.deepcopy(self.statuses),
            "in_flight": self.in_flight,
            "max_concurrent": self.max_concurrent,
            "tokens_issued": self.tokens_issued,
            "token_requests": self.token_requests,
            "faults_served": self.faults_served,
            "retry_gaps": list(self.retry_gaps),
            "users": sum(1 for r in self.dir.users.values() if not r["deleted"]),
            "seq": self.dir.seq,
            "delta_epoch": self.delta_epoch,
            "token_lifetime": self.token_lifetime,
            "log": list(self.log),
        }


# ---------------------------------------------------------------------------
# Graph resources: pure functions of (state, request) -> (status, headers,
# body), so top-level requests and $batch items share them.
# ---------------------------------------------------------------------------

class Call:
    def __init__(self, method, path, query, headers, body, base):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers      # lower-cased names
        self.body = body
        self.base = base            # "http://127.0.0.1:PORT"


def parse_select(call, allowed, type_name):
    raw = qfirst(call.query, "$select")
    if raw is None:
        return None
    fields = [f.strip() for f in raw.split(",") if f.strip()]
    for f in fields:
        if f not in allowed:
            raise GraphError(400, "Request_BadRequest",
                             "Could not find a property named '%s' on type "
                             "'microsoft.graph.%s'." % (f, type_name))
    return fields


def project(obj, fields, always_id=False):
    if fields is None:
        return dict(obj)
    out = {f: obj.get(f) for f in fields}
    if always_id:
        out["id"] = obj["id"]
    return out


def parse_top(call):
    raw = qfirst(call.query, "$top")
    if raw is None:
        return DEFAULT_TOP
    try:
        top = int(raw)
    except ValueError:
        top = -1
    if not 1 <= top <= MAX_TOP:
        raise GraphError(400, "Request_BadRequest",
                         "Invalid page size specified: '%s'. Must be between 1 "
                         "and %d inclusive." % (raw, MAX_TOP))
    return top


def skip_after(call):
    """The ordinal a $skiptoken resumes after (0 without one)."""
    raw = qfirst(call.query, "$skiptoken")
    if raw is None:
        return 0
    tok = decode_token(raw)
    if not tok or not isinstance(tok.get("after"), int):
        raise GraphError(400, "Request_BadRequest", "Invalid skip token.")
    return tok["after"]


def list_page(call, collection, items):
    return {"@odata.context": "%s/v1.0/$metadata#%s" % (call.base, collection),
            "value": items}


def list_users(state, call):
    select = parse_select(call, USER_PROPERTIES, "user")
    top = parse_top(call)
    users, last, more = state.dir.live_users(skip_after(call), top)
    body = list_page(call, "users", [project(u, select) for u in users])
    if more:
        q = build_query([("$top", top), ("$select", qfirst(call.query, "$select")),
                         ("$skiptoken", encode_token({"after": last, "k": "users"}))])
        body["@odata.nextLink"] = "%s/v1.0/users?%s" % (call.base, q)
    return 200, [], body


def list_groups(state, call):
    select = parse_select(call, GROUP_PROPERTIES, "group")
    top = parse_top(call)
    after = skip_after(call)
    groups = state.dir.groups[after:after + top]
    body = list_page(call, "groups", [project(g, select) for g in groups])
    if after + top < len(state.dir.groups):
        q = build_query([("$top", top), ("$select", qfirst(call.query, "$select")),
                         ("$skiptoken", encode_token({"after": after + top, "k": "groups"}))])
        body["@odata.nextLink"] = "%s/v1.0/groups?%s" % (call.base, q)
    return 200, [], body


def get_user(state, call, uid):
    rec = state.dir.live(uid)
    if rec is None:
        raise GraphError(404, "Request_ResourceNotFound",
                         "Resource '%s' does not exist or one of its queried "
                         "reference-property objects are not present." % uid)
    select = parse_select(call, USER_PROPERTIES, "user")
    body = project(rec["data"], select)
    body["@odata.context"] = "%s/v1.0/$metadata#users/$entity" % call.base
    return 200, [], body


def delta_page_size(state, call):
    prefer = call.headers.get("prefer", "")
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize":
            try:
                return max(1, int(value))
            except ValueError:
                pass
    return state.delta_page_size


def delta_item(rec, select):
    if rec["deleted"]:
        return {"id": rec["data"]["id"], "@removed": {"reason": "deleted"}}
    return project(rec["data"], select, always_id=True)


def resync_required(call, select):
    """410 Gone: the client must start over from the initial URL."""
    location = "%s/v1.0/users/delta" % call.base
    if select:
        location += "?" + build_query([("$select", ",".join(select))])
    raise GraphError(410, "syncStateNotFound",
                     "The sync state generation is not found or has expired; "
                     "restart the delta sync from the initial URL.",
                     headers=[("Location", location)])


def users_delta(state, call):
    d = state.dir
    page = delta_page_size(state, call)
    skip = qfirst(call.query, "$skiptoken")
    deltatoken = qfirst(call.query, "$deltatoken")
    if skip is not None:
        tok = decode_token(skip)
        if not tok or tok.get("k") != "delta":
            raise GraphError(400, "Request_BadRequest", "Invalid skip token.")
        if tok.get("e") != state.delta_epoch:
            resync_required(call, tok.get("sel"))
        select, since, until, after = tok.get("sel"), tok["f"], tok["s"], tok["o"]
    elif deltatoken == "latest":
        select = parse_select(call, USER_PROPERTIES, "user")
        since = until = d.seq
        after = 0
    elif deltatoken is not None:
        tok = decode_token(deltatoken)
        if not tok or tok.get("k") != "deltalink" or tok.get("e") != state.delta_epoch:
            resync_required(call, tok.get("sel") if tok else None)
        select, since, until, after = tok.get("sel"), tok["s"], d.seq, 0
    else:
        # Initial round: every live user, as of now.  since = -1 so users
        # stamped 0 (the initial population) are included.
        select = parse_select(call, USER_PROPERTIES, "user")
        since, until, after = -1, d.seq, 0

    # The initial round (since < 0) lists live users only; later rounds
    # also carry tombstones, surfaced as @removed.
    recs, last, more = d.changed(since, until, after, page, with_deleted=since >= 0)
    body = {"@odata.context": "%s/v1.0/$metadata#users" % call.base,
            "value": [delta_item(r, select) for r in recs]}
    if more:
        tok = {"k": "delta", "e": state.delta_epoch, "sel": select,
               "f": since, "s": until, "o": last}
        body["@odata.nextLink"] = "%s/v1.0/users/delta?$skiptoken=%s" % (call.base, encode_token(tok))
    else:
        tok = {"k": "deltalink", "e": state.delta_epoch, "sel": select, "s": until}
        body["@odata.deltaLink"] = "%s/v1.0/users/delta?$deltatoken=%s" % (call.base, encode_token(tok))
    return 200, [], body


def batch(state, call, run_item):
    try:
        payload = json.loads(call.body or b"null")
    except ValueError:
        raise GraphError(400, "BadRequest", "Invalid batch payload format: not JSON.")
    reqs = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(reqs, list) or not reqs:
        raise GraphError(400, "BadRequest", "Invalid batch payload format: 'requests' must be a non-empty array.")
    if len(reqs) > MAX_BATCH:
        raise GraphError(400, "BadRequest",
                         "Number of batch request steps exceeds the maximum of %d." % MAX_BATCH)
    ids = []
    for r in reqs:
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) \
                or not isinstance(r.get("method"), str) or not isinstance(r.get("url"), str):
            raise GraphError(400, "BadRequest", "Each batch request needs string 'id', 'method' and 'url'.")
        ids.append(r["id"])
    if len(set(ids)) != len(ids):
        raise GraphError(400, "BadRequest", "Batch request contains duplicate request Ids.")
    by_id = {r["id"]: r for r in reqs}
    for r in reqs:
        for dep in r.get("dependsOn") or []:
            if dep not in by_id:
                raise GraphError(400, "BadRequest",
                                 "Request '%s' depends on unknown request '%s'." % (r["id"], dep))

    done = {}

    def answer(r, trail=()):
        rid = r["id"]
        if rid in done:
            return done[rid]
        if rid in trail:
            raise GraphError(400, "BadRequest", "Batch request dependencies form a cycle.")
        failed_dep = False
        for dep in r.get("dependsOn") or []:
            if answer(by_id[dep], trail + (rid,))["status"] >= 400:
                failed_dep = True
        if failed_dep:
            res = item_error(rid, 424, "FailedDependency",
                             "The request depends on a request that failed.")
        else:
            res = run_item(r)
        done[rid] = res
        return res

    for r in reqs:
        answer(r)
    # "in any order": answer in reverse so clients cannot rely on order.
    return 200, [], {"responses": [done[r["id"]] for r in reversed(reqs)]}


def item_error(rid, status, code, message, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return {"id": rid, "status": status, "headers": h,
            "body": graph_error_body(status, code, message)}


def route(state, call, run_item=None):
    """Dispatches a Graph call under /v1.0.  Raises GraphError."""
    parts = [unquote(p) for p in call.path.split("/")[2:]]
    method = call.method
    if parts == ["$batch"]:
        if run_item is None:
            raise GraphError(400, "BadRequest", "A batch request cannot contain a batch request.")
        if method != "POST":
            raise GraphError(405, "BadRequest", "Specified HTTP method is not allowed for the request target.")
        return batch(state, call, run_item)
    if method != "GET":
        raise GraphError(405, "BadRequest", "Specified HTTP method is not allowed for the request target.")
    if parts == ["users"]:
        return list_users(state, call)
    if parts == ["users", "delta"]:
        return users_delta(state, call)
    if len(parts) == 2 and parts[0] == "users":
        return get_user(state, call, parts[1])
    if parts == ["groups"]:
        return list_groups(state, call)
    raise GraphError(400, "BadRequest", "Resource not found for the segment '%s'." % (parts[-1] if parts else ""))


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "weir-graph-mock/1"
    # Headers and body go out in separate writes: with Nagle on, each
    # response would wait for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("graph-mock: " + (fmt % args) + "\n")

    @property
    def state(self):
        return self.server.state

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(self, status, body, headers=(), ctype="application/json"):
        data = json.dumps(body).encode() if body is not None else b""
        # Record before the client can see the answer: a test that resets
        # the stats right after must never see this request counted late.
        url = getattr(self, "url", None)
        if url is not None and not url.path.startswith("/_control/") and not self.recorded:
            self.recorded = True
            st = self.state
            with st.lock:
                st.record(self.command, url.path, url.query, status, self.fault is not None)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 204:
            self.wfile.write(data)
        self.wfile.flush()

    def send_graph_error(self, err):
        self.send(err.status, graph_error_body(err.status, err.code, err.message), err.headers)

    def base_url(self):
        return "http://%s" % (self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1])

    def dispatch(self):
        url = urlsplit(self.path)
        self.url = url
        self.query = parse_qs(url.query, keep_blank_values=True)
        self.body = self.read_body()
        self.fault = None
        self.recorded = False
        if url.path.startswith("/_control/"):
            self.control(url.path[len("/_control/"):])
            return
        st = self.state
        with st.lock:
            st.in_flight += 1
            st.max_concurrent = max(st.max_concurrent, st.in_flight)
            st.requests[url.path] = st.requests.get(url.path, 0) + 1
        try:
            status = self.serve()
        finally:
            with st.lock:
                st.in_flight -= 1
        if not self.recorded:                   # dropped: no answer was sent
            with st.lock:
                st.record(self.command, url.path, url.query, status, self.fault is not None)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = dispatch

    def serve(self):
        """Answers one non-control request; returns the status sent (0 for
        a dropped connection)."""
        st = self.state
        key = ("request", self.command, self.url.path + ("?" + self.url.query if self.url.query else ""))
        is_token = self.url.path.endswith("/oauth2/v2.0/token")
        with st.lock:
            if is_token:
                st.token_requests += 1
            st.note_retry(key, "request")
            self.fault = st.take_fault("request", self.command, self.url.path)
            if self.fault and self.fault.get("expire_tokens"):
                st.expire_tokens()
        f = self.fault
        if f and f.get("delay_ms"):
            time.sleep(f["delay_ms"] / 1000.0)
        if f and f.get("drop"):
            with st.lock:
                st.note_fault_sent(key, None, 0)
            self.close_connection = True
            return 0
        if f and f.get("status"):
            return self.serve_fault(f, key)
        if is_token:
            return self.token_endpoint()
        if self.url.path.startswith("/v1.0/"):
            return self.graph()
        self.send(404, {"error": {"code": "NotFound", "message": "no such endpoint: %s" % self.url.path}})
        return 404

    def serve_fault(self, f, key):
        status = int(f["status"])
        headers, retry_after = fault_retry_after(f)
        headers += [(k, str(v)) for k, v in (f.get("headers") or {}).items()]
        if "body" in f:
            body = f["body"]
        else:
            code, message = STATUS_CODES.get(status, ("UnknownError", "Error."))
            body = graph_error_body(status, f.get("code", code), f.get("message", message))
        self.send(status, body, headers)
        with self.state.lock:
            self.state.note_fault_sent(key, retry_after, status)
        return status

    # -- identity ----------------------------------------------------------

    def token_error(self, status, error, code, description):
        self.send(status, {
            "error": error,
            "error_description": "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s" % (
                code, description, uuid.uuid4(), uuid.uuid4(), now_iso()),
            "error_codes": [code], "timestamp": now_iso(),
            "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())})
        return status

    def token_endpoint(self):
        st = self.state
        a = st.args
        tenant = self.url.path.split("/")[1]
        if self.command != "POST":
            return self.token_error(405, "invalid_request", 900561,
                                    "The endpoint only accepts POST requests.")
        form = {k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                form.setdefault("client_id", unquote(cid))
                form.setdefault("client_secret", unquote(secret))
            except (ValueError, binascii.Error):
                pass
        if tenant != a.tenant:
            return self.token_error(400, "invalid_request", 90002,
                                    "Tenant '%s' not found. Check to make sure you have "
                                    "the correct tenant ID and are signing into the "
                                    "correct cloud." % tenant)
        if form.get("grant_type") != "client_credentials":
            return self.token_error(400, "unsupported_grant_type", 70003,
                                    "The app requested an unsupported grant type '%s'."
                                    % form.get("grant_type", ""))
        cid = form.get("client_id", "")
        if cid != a.client_id:
            return self.token_error(400, "unauthorized_client", 700016,
                                    "Application with identifier '%s' was not found in "
                                    "the directory '%s'." % (cid, tenant))
        if not secrets.compare_digest(form.get("client_secret", ""), a.client_secret):
            return self.token_error(401, "invalid_client", 7000215,
                                    "Invalid client secret provided. Ensure the secret "
                                    "being sent in the request is the client secret "
                                    "value, not the client secret ID, for a secret "
                                    "added to app '%s'." % cid)
        if form.get("scope") != GRAPH_SCOPE:
            return self.token_error(400, "invalid_scope", 70011,
                                    "The provided request must include a 'scope' input "
                                    "parameter. The provided value for the input "
                                    "parameter 'scope' is not valid. The scope %s is not "
                                    "valid." % form.get("scope", ""))
        with st.lock:
            token = st.issue_token()
            lifetime = st.token_lifetime
        self.send(200, {"token_type": "Bearer", "expires_in": int(lifetime),
                        "ext_expires_in": int(lifetime), "access_token": token})
        return 200

    # -- Graph -------------------------------------------------------------

    def check_auth(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.",
                             headers=[("WWW-Authenticate", 'Bearer realm="", error="invalid_token"')])
        with self.state.lock:
            verdict = self.state.token_state(auth[7:].strip())
        if verdict == "expired":
            raise GraphError(401, "InvalidAuthenticationToken",
                             "Access token has expired or is not yet valid.",
                             headers=[("WWW-Authenticate", 'Bearer error="invalid_token", '
                                       'error_description="The access token expired"')])
        if verdict != "ok":
            raise GraphError(401, "InvalidAuthenticationToken",
                             "IDX14100: JWT is not well formed.",
                             headers=[("WWW-Authenticate", 'Bearer error="invalid_token"')])

    def graph(self):
        headers = {k.lower(): v for k, v in self.headers.items()}
        call = Call(self.command, self.url.path, self.query, headers, self.body, self.base_url())
        try:
            self.check_auth()
            with self.state.lock:
                status, extra, body = route(self.state, call, self.batch_item)
        except GraphError as err:
            self.send_graph_error(err)
            return err.status
        self.send(status, body, extra)
        return status

    def batch_item(self, r):
        """One $batch item (called with the state lock held)."""
        st = self.state
        rid, method = r["id"], r["method"].upper()
        url = urlsplit(r["url"])
        if url.scheme or not url.path.startswith("/"):
            return item_error(rid, 400, "BadRequest",
                              "Batch request URLs must be relative, e.g. /users.")
        path = "/v1.0" + url.path
        st.batch_items[path] = st.batch_items.get(path, 0) + 1
        key = ("batch_item", method, r["url"])
        st.note_retry(key, "batch_item")
        f = st.take_fault("batch_item", method, path)
        if f and f.get("status"):
            headers, retry_after = fault_retry_after(f)
            code, message = STATUS_CODES.get(int(f["status"]), ("UnknownError", "Error."))
            st.note_fault_sent(key, retry_after, int(f["status"]))
            return item_error(rid, int(f["status"]), f.get("code", code),
                              f.get("message", message), dict(headers))
        item_headers = {k.lower(): str(v) for k, v in (r.get("headers") or {}).items()}
        body = r.get("body")
        call = Call(method, path, parse_qs(url.query, keep_blank_values=True),
                    item_headers, json.dumps(body).encode() if body is not None else b"",
                    self.base_url())
        try:
            status, extra, out = route(st, call, None)
        except GraphError as err:
            return item_error(rid, err.status, err.code, err.message, dict(err.headers))
        h = {"Content-Type": "application/json"}
        h.update(dict(extra))
        return {"id": rid, "status": status, "headers": h, "body": out}

    # -- control -------------------------------------------------------------

    def control(self, what):
        st = self.state
        try:
            payload = json.loads(self.body) if self.body else {}
        except ValueError:
            self.send(400, {"error": "control body is not JSON"})
            return
        handler = CONTROL.get((self.command, what))
        if handler is None:
            self.send(404, {"error": "no such control endpoint: %s %s" % (self.command, what)})
            return
        try:
            with st.lock:
                out = handler(st, payload)
        except (ValueError, KeyError, TypeError) as err:
            self.send(400, {"error": "%s: %s" % (type(err).__name__, err)})
            return
        self.send(200, out)


def fault_retry_after(f):
    """Retry-After header of a fault step: (headers, seconds or None)."""
    if "retry_after_http_date" in f:
        # HTTP-date has whole seconds: round the moment up, then report
        # the real wait that implies.
        target = math.ceil(time.time()) + float(f["retry_after_http_date"])
        return [("Retry-After", formatdate(target, usegmt=True))], target - time.time()
    if "retry_after" in f:
        value = str(f["retry_after"])
        try:
            seconds = float(value)
        except ValueError:          # an HTTP-date given verbatim
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        return [("Retry-After", value)], seconds
    return [], None


def ctl_faults(st, payload):
    rules = payload.get("rules") if "rules" in payload else [payload]
    added = [FaultRule(r) for r in rules]
    st.faults.extend(added)
    return {"rules": len(st.faults), "added": len(added)}


def ctl_get_faults(st, payload):
    return {"rules": [r.describe() for r in st.faults if r.steps]}


def ctl_expire_tokens(st, payload):
    st.expire_tokens()
    return {"expired": len(st.tokens)}


def ctl_expire_delta_tokens(st, payload):
    st.delta_epoch += 1
    return {"delta_epoch": st.delta_epoch}


def ctl_users(st, payload):
    d = st.dir
    out = {"created": [], "updated": [], "deleted": []}
    create = payload.get("create") or []
    if isinstance(create, int):
        create = [{} for _ in range(create)]
    for props in create:
        out["created"].append(d.create(props))
    for change in payload.get("update") or []:
        d.update(change["id"], change)
        out["updated"].append(change["id"])
    for uid in payload.get("delete") or []:
        d.delete(uid)
        out["deleted"].append(uid)
    out["seq"] = d.seq
    return out


def ctl_get_users(st, payload):
    users, _, _ = st.dir.live_users()
    return {"value": users}


def ctl_config(st, payload):
    if "token_lifetime" in payload:
        st.token_lifetime = float(payload["token_lifetime"])
    if "delta_page_size" in payload:
        st.delta_page_size = max(1, int(payload["delta_page_size"]))
    return {"token_lifetime": st.token_lifetime, "delta_page_size": st.delta_page_size}


def ctl_stats(st, payload):
    return st.stats()


def ctl_reset(st, payload):
    st.reset()
    return {"reset": True}


CONTROL = {
    ("POST", "faults"): ctl_faults,
    ("GET", "faults"): ctl_get_faults,
    ("POST", "expire_tokens"): ctl_expire_tokens,
    ("POST", "expire_delta_tokens"): ctl_expire_delta_tokens,
    ("POST", "users"): ctl_users,
    ("GET", "users"): ctl_get_users,
    ("POST", "config"): ctl_config,
    ("GET", "stats"): ctl_stats,
    ("POST", "reset"): ctl_reset,
}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    verbose = False

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)) and not self.verbose:
            return
        super().handle_error(request, client_address)


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, path)


def watch_parent(parent):
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--users", type=int, default=250, help="users at start (250)")
    ap.add_argument("--seed", type=int, default=1, help="data seed (1)")
    ap.add_argument("--tenant", default="weir-test-tenant")
    ap.add_argument("--client-id", default="00000000-0000-4000-8000-00000000c11e")
    ap.add_argument("--client-secret", default="mock-secret-Q8~weir.graph")
    ap.add_argument("--domain", default="contoso.example")
    ap.add_argument("--token-lifetime", type=float, default=3599,
                    help="access token lifetime in seconds (3599)")
    ap.add_argument("--delta-page-size", type=int, default=100,
                    help="users per delta page (100; Prefer: odata.maxpagesize overrides)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="exit when the parent process goes away")
    args = ap.parse_args()
    if args.users < 0 or args.delta_page_size < 1:
        ap.error("--users must be >= 0 and --delta-page-size >= 1")

    server = Server(("127.0.0.1", args.port), Handler)
    server.verbose = args.verbose
    server.state = State(args)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    if args.exit_with_parent:
        threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    else:
        print(port, flush=True)
    server.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    main()
