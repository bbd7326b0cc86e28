"""A local Amazon SES v2 API on 127.0.0.1 that checks every SendEmail the way AWS would.

    with SesServer() as server:
        transport = SesTransport(server.settings())
        ...
        assert server.accepted[0].raw == expected_bytes

Checks on every request: POST /v2/email/outbound-emails, Content-Type application/json; the
Authorization header is AWS Signature Version 4 for service "ses" and the configured region, with our
access key, signing at least host and x-amz-date, and its signature is recomputed here from the
request (independently of botocore) and must match; the JSON body, with Content.Raw.Data base64
decoded, must pass botocore's own model check (ParamValidator on the SendEmail input shape). A bad
signature answers 403 InvalidSignatureException, a bad body 400 BadRequestException, as SES does;
both are recorded in `violations`.

Answers: 200 {"MessageId": ...}; `refuse` (recipient -> (code, message)) and `fail_next(status, code)`
answer errors as rest-json does (x-amzn-ErrorType header, {"message": ...} body).

SnsSigner (below) plays SNS for the webhook: it signs notifications with its own key and serves its
certificate through `fetch`, which the tests put in place of the webhook's downloader.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import itertools
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import botocore.session
from botocore.validate import ParamValidator
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from publisher.config import SesSettings

LOOPBACK = "127.0.0.1"
SEND_EMAIL_PATH = "/v2/email/outbound-emails"

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)"
    r"/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?Signature=(?P<signature>[0-9a-f]{64})$"
)


def send_email_input_shape() -> Any:
    model = botocore.session.get_session().get_service_model("sesv2")
    return model.operation_model("SendEmail").input_shape


@dataclass(frozen=True)
class ReceivedCall:
    headers: dict[str, str]
    params: dict[str, Any]  # the decoded SendEmail parameters (Content.Raw.Data as bytes)
    status: int

    @property
    def raw(self) -> bytes:
        data: bytes = self.params["Content"]["Raw"]["Data"]
        return data

    @property
    def to(self) -> list[str]:
        return list(self.params.get("Destination", {}).get("ToAddresses", []))

    def parsed(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error_answer(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"message": message}, {"x-amzn-ErrorType": code})


class SesServer:
    def __init__(self, *, region: str = "eu-west-1", access_key_id: str = "AKIDTESTPUBLISHER",
                 secret_access_key: str = "test-secret/0123456789", refuse: dict[str, tuple[str, str]] | None = None) -> None:
        self.region = region
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.refuse = dict(refuse or {})
        self.received: list[ReceivedCall] = []
        self.violations: list[str] = []
        self._planned: deque[Answer] = deque()
        self.message_ids = True  # False: a 200 without a MessageId
        self.revoke_after: int | None = None  # after this many accepted calls, the key is refused (403)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._shape = send_email_input_shape()
        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="ses-api", daemon=True)

    # --- control ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._httpd.server_address[1]}"

    def settings(self, **overrides: Any) -> SesSettings:
        values: dict[str, Any] = {"kind": "ses", "region": self.region, "access_key_id": self.access_key_id,
                                  "secret_access_key": self.secret_access_key, "base_url": self.url, "timeout": 5.0}
        values.update(overrides)
        return SesSettings(**values)

    def fail_next(self, status: int, code: str, message: str = "", *, times: int = 1,
                  headers: dict[str, str] | None = None) -> None:
        for _ in range(times):
            planned = error_answer(status, code, message or f"planned {code}")
            planned.headers.update(headers or {})
            self._planned.append(planned)

    @property
    def accepted(self) -> list[ReceivedCall]:
        return [call for call in self.received if call.status == 200]

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- one request -----------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if method != "POST" or path != SEND_EMAIL_PATH:
            return self._violation(f"{method} {path}: not SendEmail",
                                   error_answer(404, "NotFoundException", f"no operation at {method} {path}"))
        lower = {name.lower(): value for name, value in headers.items()}
        if self.revoke_after is not None and len(self.accepted) >= self.revoke_after:
            answer = error_answer(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
            with self._lock:
                self.received.append(ReceivedCall(headers, {}, answer.status))
            return answer
        problem = self._signature_problem(method, path, lower, body)
        if problem:
            return self._violation(problem, error_answer(403, "InvalidSignatureException", problem))
        if not lower.get("content-type", "").startswith("application/json"):
            return self._violation(f"Content-Type {lower.get('content-type')!r}",
                                   error_answer(400, "BadRequestException", "expected application/json"))
        try:
            params = self._decoded(json.loads(body))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            return self._violation(f"body: {exc}", error_answer(400, "BadRequestException", str(exc)))
        report = ParamValidator().validate(params, self._shape)
        if report.has_errors():
            return self._violation(f"SendEmail model: {report.generate_report()}",
                                   error_answer(400, "BadRequestException", report.generate_report()))
        with self._lock:
            planned = self._planned.popleft() if self._planned else None
        if planned is None:
            refusals = [self.refuse[a] for a in params.get("Destination", {}).get("ToAddresses", []) if a in self.refuse]
            if refusals:
                planned = error_answer(400, *refusals[0])
        answer = planned or Answer(200, {"MessageId": f"0102018c{next(self._ids):08x}-test-000000"}
                                   if self.message_ids else {}, {"x-amzn-RequestId": f"req-{threading.get_ident()}"})
        with self._lock:
            self.received.append(ReceivedCall(headers, params, answer.status))
        return answer

    def _violation(self, problem: str, answer: Answer) -> Answer:
        with self._lock:
            self.violations.append(problem)
        return answer

    @staticmethod
    def _decoded(document: Any) -> dict[str, Any]:
        """The JSON body as SendEmail parameters: rest-json sends blobs base64-encoded."""
        if not isinstance(document, dict):
            raise TypeError("the body is not a JSON object")
        raw = document.get("Content", {}).get("Raw")
        if isinstance(raw, dict) and isinstance(raw.get("Data"), str):
            raw["Data"] = base64.b64decode(raw["Data"], validate=True)
        return document

    def _signature_problem(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        """Recompute the SigV4 signature (AWS General Reference, "Create a signed AWS API request")."""
        match = _AUTHORIZATION.match(headers.get("authorization", ""))
        if match is None:
            return f"Authorization is not SigV4: {headers.get('authorization', '')[:60]!r}"
        if match["service"] != "ses" or match["region"] != self.region:
            return f"signed for {match['service']} in {match['region']}, expected ses in {self.region}"
        if match["key"] != self.access_key_id:
            return f"unknown access key {match['key']!r}"
        signed = match["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed or signed != sorted(signed):
            return f"SignedHeaders must be sorted and include host and x-amz-date: {signed}"
        amz_date = headers.get("x-amz-date", "")
        if not amz_date.startswith(match["date"]):
            return f"X-Amz-Date {amz_date!r} does not match the credential date {match['date']}"
        payload_hash = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
        canonical_headers = "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed)
        canonical = "\n".join([method, path, "", canonical_headers, match["signed"], payload_hash])
        scope = f"{match['date']}/{self.region}/ses/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = f"AWS4{self.secret_access_key}".encode()
        for part in (match["date"], self.region, "ses", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["signature"]):
            return "the SigV4 signature does not match the request"
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                answer = server.answer("POST", self.path, dict(self.headers.items()), body)
                data = json.dumps(answer.body).encode("utf-8")
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler


# --- SNS, as it signs notifications for the webhook -----------------------------------------------


def sns_now() -> str:
    """SNS's Timestamp format, for now (the webhook refuses messages outside its window)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass
class SnsSigner:
    """Signs SNS messages with a key of our own; `fetch` stands in for downloading its certificate.

    The canonical string is written out here from the SNS documentation ("Verifying the signatures of
    Amazon SNS messages"), independently of the webhook's code, so a mistake there shows.
    """

    topic_arn: str
    region: str = "eu-west-1"
    fetched: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key, self.certificate_pem = _signing_identity()
        self.cert_url = f"https://sns.{self.region}.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if url == self.cert_url:
            return self.certificate_pem
        if "Action=ConfirmSubscription" in url:
            return b"<ConfirmSubscriptionResponse><ConfirmSubscriptionResult/></ConfirmSubscriptionResponse>"
        raise OSError(f"nothing at {url}")

    def notification(self, ses_event: dict[str, Any], *, message_id: str = "n-1", version: str = "1",
                     topic_arn: str | None = None, subject: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": topic_arn or self.topic_arn,
            "Message": json.dumps(ses_event),
            "Timestamp": sns_now(),
            "UnsubscribeURL": f"https://sns.{self.region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
        }
        if subject is not None:
            message["Subject"] = subject
        return self.sign(message, version)

    def subscription_confirmation(self, *, subscribe_url: str | None = None, message_id: str = "s-1") -> dict[str, Any]:
        url = subscribe_url or (f"https://sns.{self.region}.amazonaws.com/?Action=ConfirmSubscription"
                                f"&TopicArn={self.topic_arn}&Token=tok")
        message = {
            "Type": "SubscriptionConfirmation",
            "MessageId": message_id,
            "Token": "tok",
            "TopicArn": self.topic_arn,
            "Message": f"You have chosen to subscribe to the topic {self.topic_arn}.",
            "SubscribeURL": url,
            "Timestamp": sns_now(),
        }
        return self.sign(message, "1")

    def sign(self, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
        if message["Type"] == "Notification":
            names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        else:
            names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        text = "".join(f"{name}\n{message[name]}\n" for name in names if name in message)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(text.encode("utf-8"), padding.PKCS1v15(), algorithm)
        return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode("ascii"),
                "SigningCertURL": self.cert_url}


@functools.lru_cache(maxsize=2)
def _signing_identity(name: str = "sns.amazonaws.com") -> tuple[rsa.RSAPrivateKey, bytes]:
    """An RSA key and a self-signed certificate for it, valid from yesterday to tomorrow."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)
