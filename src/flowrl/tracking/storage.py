"""S3 storage for DVC data and MLflow artifacts (any S3-compatible endpoint).

Bucket, prefix and endpoint come from the arguments of `s3_location` or the environment
(FLOWRL_S3_BUCKET, FLOWRL_S3_PREFIX, FLOWRL_S3_ENDPOINT_URL). Credentials come only from the
environment or AWS profiles (boto3's own chain): they are never written to params, DVC config
committed to git, logs or MLflow.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flowrl.errors import FlowRLError


class StorageError(FlowRLError):
    """The S3 location cannot be used; the message says why and what to change."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str = "flowrl"
    endpoint_url: str | None = None

    @property
    def dvc_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}/dvc"

    @property
    def mlflow_artifact_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}/mlflow"


def s3_location(
    bucket: str | None = None, prefix: str | None = None, endpoint_url: str | None = None
) -> S3Location | None:
    """The configured location: explicit arguments win over the environment; None when no bucket."""
    bucket = bucket or os.environ.get("FLOWRL_S3_BUCKET")
    if not bucket:
        return None
    return S3Location(
        bucket=bucket,
        prefix=prefix or os.environ.get("FLOWRL_S3_PREFIX", "flowrl"),
        endpoint_url=endpoint_url or os.environ.get("FLOWRL_S3_ENDPOINT_URL") or None,
    )


def check_access(loc: S3Location) -> None:
    """Fail early, with one clear message, when the bucket is missing or the credentials are refused."""
    import boto3
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    # A fresh session: the default one caches credentials from its first use.
    client = boto3.session.Session().client("s3", endpoint_url=loc.endpoint_url)
    where = f"s3://{loc.bucket}" + (f" at {loc.endpoint_url}" if loc.endpoint_url else "")
    try:
        client.list_objects_v2(Bucket=loc.bucket, MaxKeys=1)  # DVC needs ListBucket anyway
    except NoCredentialsError:
        raise StorageError(
            f"no AWS credentials for {where}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
        ) from None
    except EndpointConnectionError:
        raise StorageError(f"cannot reach {where}: check FLOWRL_S3_ENDPOINT_URL") from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise StorageError(
                f"bucket {loc.bucket!r} does not exist ({where}): create it or fix FLOWRL_S3_BUCKET"
            ) from None
        if code in ("403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
            raise StorageError(
                f"credentials refused by {where} ({code}): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
            ) from None
        raise StorageError(f"{where}: {code or exc}") from None


def configure_dvc_remote(root: Path, loc: S3Location, name: str = "storage") -> None:
    """Make `loc` the default DVC remote, in .dvc/config.local (not committed: it is per machine)."""
    check_access(loc)
    dvc = [str(Path(os.sys.executable).with_name("dvc"))]

    def call(*args: str) -> None:
        proc = subprocess.run(dvc + list(args), cwd=root, capture_output=True, text=True)
        if proc.returncode:
            raise StorageError(f"dvc {' '.join(args)} failed: {proc.stderr.strip()}")

    call("remote", "add", "--local", "--force", "--default", name, loc.dvc_url)
    if loc.endpoint_url:
        call("remote", "modify", "--local", name, "endpointurl", loc.endpoint_url)
