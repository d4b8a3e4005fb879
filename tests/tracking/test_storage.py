"""S3 storage against a local S3 server (moto, server mode, on loopback)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from flowrl.tracking.storage import StorageError, check_access, configure_dvc_remote, s3_location

moto_server = pytest.importorskip("moto.server", reason="moto[server] is a test dependency; install .[test]")

DVC = str(Path(sys.executable).with_name("dvc"))
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server with authentication on; yields (endpoint, access key, secret)."""
    import urllib.request

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # Moto's documented switch: the next 3 calls (create the user, its policy and key) need no auth;
    # every call after them is authenticated, so a wrong key is refused as on real S3.
    reset = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=b"3", method="POST", headers={"Content-Type": "text/plain"}
    )
    previous = json.loads(urllib.request.urlopen(reset).read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    iam.create_user(UserName="ci")
    iam.put_user_policy(UserName="ci", PolicyName="all", PolicyDocument=json.dumps(ADMIN_POLICY))
    key = iam.create_access_key(UserName="ci")["AccessKey"]
    yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    urllib.request.urlopen(
        urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth",
            data=previous.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
    )
    server.stop()


@pytest.fixture
def creds(s3, monkeypatch):
    endpoint, key_id, secret = s3
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return endpoint


def _bucket(endpoint: str, name: str) -> str:
    boto3.session.Session().client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


def _sh(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 0, f"{cmd}: {proc.stderr}"
    return proc.stdout


def test_push_then_pull_into_fresh_clone_has_equal_checksums(creds, tmp_path):
    endpoint = creds
    loc = s3_location(bucket=_bucket(endpoint, "flowrl-data"), prefix="ci", endpoint_url=endpoint)
    repo = tmp_path / "repo"
    repo.mkdir()
    _sh(["git", "init", "-q"], repo)
    _sh(["git", "config", "user.email", "ci@example.com"], repo)
    _sh(["git", "config", "user.name", "ci"], repo)
    _sh([DVC, "init", "-q"], repo)
    (repo / "data").mkdir()
    payload = os.urandom(200_000)
    (repo / "data/blob.bin").write_bytes(payload)
    _sh([DVC, "add", "-q", "data/blob.bin"], repo)
    _sh(["git", "add", "-A"], repo)
    _sh(["git", "commit", "-qm", "data"], repo)
    configure_dvc_remote(repo, loc)
    assert "aws_secret" not in (repo / ".dvc/config.local").read_text().lower()
    _sh([DVC, "push", "-q"], repo)

    clone = tmp_path / "clone"
    _sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "data/blob.bin").exists()
    configure_dvc_remote(clone, loc)
    _sh([DVC, "pull", "-q"], clone)
    assert hashlib.md5((clone / "data/blob.bin").read_bytes()).hexdigest() == hashlib.md5(payload).hexdigest()


def test_missing_bucket_is_a_clear_error(creds):
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        check_access(s3_location(bucket="no-such-bucket", endpoint_url=creds))


def test_wrong_credentials_are_a_clear_error(creds, monkeypatch):
    bucket = _bucket(creds, "flowrl-auth")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    with pytest.raises(StorageError, match="credentials refused"):
        check_access(s3_location(bucket=bucket, endpoint_url=creds))


def test_location_from_environment(monkeypatch):
    monkeypatch.setenv("FLOWRL_S3_BUCKET", "b")
    monkeypatch.setenv("FLOWRL_S3_PREFIX", "team/x")
    loc = s3_location()
    assert (loc.dvc_url, loc.mlflow_artifact_uri, loc.endpoint_url) == (
        "s3://b/team/x/dvc",
        "s3://b/team/x/mlflow",
        None,
    )
    monkeypatch.delenv("FLOWRL_S3_BUCKET")
    assert s3_location() is None
