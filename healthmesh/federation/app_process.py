"""The hub's own app process: it runs the installed healthmesh ClientApp, and nothing else.

A SuperNode started with ``--isolation process`` runs no code of its own: it queues each message
as a task on its local Runtime API and waits for an app process to take it. The hub starts this
process itself (``python -m healthmesh.federation.app_process``), with a scrubbed environment
(see ``network.app_process_env``). For every task it

1. reads the run's app bundle (FAB) and refuses it, with a one-line reason in the reply and in
   this process's log, unless it carries no code (only ``pyproject.toml`` and Flower's manifest)
   and names ``healthmesh.federation.client_app:app`` as its ClientApp;
2. hands the message to that ClientApp, imported once from the installed package: the bundle is
   never unpacked, never put on ``sys.path``, and its dependencies are never installed.

The process stays up across messages and runs, so a round costs no interpreter start or import.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time
import tomllib
import zipfile

__all__ = ["CLIENT_APP_REF", "bundle_refusal", "main", "serve"]

CLIENT_APP_REF = "healthmesh.federation.client_app:app"
# The Runtime API call that hands out tasks: signed with the secret the hub shares with its SuperNode.
_ACQUIRE_TASK = "/flwr.proto.Runtime/AcquireTask"
# What a code-free healthmesh bundle holds: its pyproject.toml and Flower's manifest.
_ALLOWED_FILES = {"pyproject.toml", ".info/CONTENT"}

log = logging.getLogger("healthmesh.app_process")


def bundle_refusal(fab_content: bytes) -> str | None:
    """Why this hub will not run a bundle (None when it names only the installed ClientApp)."""
    try:
        with zipfile.ZipFile(io.BytesIO(fab_content)) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
            extra = sorted(set(names) - _ALLOWED_FILES)
            if extra:
                return (
                    f"the app bundle carries files of its own ({', '.join(extra[:3])}); this hub runs "
                    f"only its installed ClientApp {CLIENT_APP_REF}"
                )
            config = tomllib.loads(archive.read("pyproject.toml").decode())
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "the app bundle is not a readable Flower app; this hub refuses it"
    components = config.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {})
    named = components.get("clientapp") if isinstance(components, dict) else None
    if named != CLIENT_APP_REF:
        return f"the app bundle names ClientApp {named!r}; this hub runs only {CLIENT_APP_REF}"
    return None


def _run_task(address: str, token: str) -> None:
    from flwr.app import Message
    from flwr.app.error import Error
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
    from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

    from healthmesh.errors import HealthmeshError
    from healthmesh.federation.client_app import app

    client = RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=True,  # the SuperNode's Runtime API on this hub's loopback
        root_certificates=None,
        interceptors=[
            RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
            RuntimeTokenHttpInterceptor(token),
        ],
        retry_invoker=make_simple_http_retry_invoker(),
    )
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    context = None
    status, details = SubStatus.FAILED, "the task failed"
    try:
        message, context, run, fab = pull_task_input(client)
        refusal = bundle_refusal(fab.content)
        if refusal is not None:
            log.error("refused run %s (app %s): %s", run.run_id, run.fab_id or "?", refusal)
            reply = Message(Error(code=ErrorCode.LOAD_CLIENT_APP_EXCEPTION, reason=refusal), reply_to=message)
            details = refusal
        else:
            log.info("run %s: %s", run.run_id, message.metadata.message_type)
            try:
                reply = app(message=message, context=context)
                status, details = SubStatus.COMPLETED, ""
            except Exception as error:  # hub_guard has already reduced it to a one-line reason
                details = str(error) if isinstance(error, HealthmeshError) else type(error).__name__
                reply = Message(
                    Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details), reply_to=message
                )
        push_message(client, reply, context)
    except Exception:  # one task's failure must not stop the hub's app process
        log.exception("task failed")
    finally:
        push_task_output(client, context, status, details)
        heartbeat.stop()
        client.close()


def serve(
    address: str, parent_pid: int | None = None, secret_file: str | None = None, poll_seconds: float = 0.1
) -> None:
    """Take the SuperNode's ClientApp tasks one at a time until the parent process ends.

    With ``secret_file`` (the SuperNode's ``--superexec-auth-secret-file``) every request for a task
    is signed, so no other local process can take the hub's messages from its SuperNode.
    """
    from flwr.proto.runtime_pb2 import AcquireTaskRequest  # type: ignore[attr-defined]
    from flwr.supercore.auth import load_superexec_auth_secret
    from flwr.supercore.constant import TaskType
    from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor, SuperExecAuthHttpInterceptor
    from flwr.supercore.protobuf.client import ProtobufClientInterceptor
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient

    import healthmesh.federation.client_app  # noqa: F401  (imported once, before the first task)

    interceptors: list[ProtobufClientInterceptor] = [
        RuntimeVersionHttpInterceptor(component_name="SuperExec")
    ]
    secret = load_superexec_auth_secret(secret_file)
    if secret is not None:
        interceptors.append(
            SuperExecAuthHttpInterceptor(master_secret=secret, protected_methods={_ACQUIRE_TASK})
        )
    client = RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=True,
        root_certificates=None,
        interceptors=interceptors,
        retry_invoker=make_simple_http_retry_invoker(),
    )
    request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
    log.info("serving ClientApp tasks of the SuperNode at %s", address)
    while parent_pid is None or _alive(parent_pid):
        try:
            response = client.AcquireTask(request)
        except Exception as error:  # the SuperNode is starting or stopping: ask again shortly
            log.debug("Runtime API not reachable: %s", error)
            time.sleep(1.0)
            continue
        if response.HasField("task") and response.token:
            _run_task(address, response.token)
            continue
        time.sleep(poll_seconds)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the hub's healthmesh ClientApp for its SuperNode.")
    parser.add_argument(
        "--runtime-api-address", required=True, help="HOST:PORT of the SuperNode's Runtime API"
    )
    parser.add_argument("--parent-pid", type=int, default=None, help="Exit when this process ends.")
    parser.add_argument(
        "--superexec-auth-secret-file", default=None, help="The secret shared with the SuperNode."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    try:
        serve(args.runtime_api_address, args.parent_pid, args.superexec_auth_secret_file)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
