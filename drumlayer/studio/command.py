"""`python -m drumlayer.studio`: the studio's command line (the app: server.py)."""

from __future__ import annotations

import logging
import socket
import sys

import uvicorn

from drumlayer import cli
from drumlayer.recipes.refine import FITS
from drumlayer.studio import guard, server
from drumlayer.studio.server import create_app
from drumlayer.training import distributed

log = logging.getLogger("drumlayer.studio.server")


def _define_flags(fv) -> None:
    from absl import flags

    flags.DEFINE_string("workdir", "runs/snare", "a trained workdir", flag_values=fv)
    flags.DEFINE_string("host", "127.0.0.1", "address to listen on (default: this machine only)",
                        flag_values=fv)
    flags.DEFINE_integer("port", 8765, "port (0: any free one, printed)", flag_values=fv)
    flags.DEFINE_float("max_upload_mb", 50.0, "largest upload accepted", flag_values=fv)
    flags.DEFINE_list("allowed_hosts", [], "host names the studio answers to besides this "
                      "machine's (127.0.0.1, localhost, ::1) and --host: the names people use "
                      "to reach it when it listens elsewhere", flag_values=fv)
    flags.DEFINE_bool("warm_up", True, "compile encode and refine at start", flag_values=fv)
    flags.DEFINE_enum("fit", "timbre", list(FITS), "what an upload's refinement matches first "
                      "(as analyze's --fit): 'timbre' (the default) or 'spectrogram' (about "
                      "0.5 dB lower LSD, a higher feature MSE)", flag_values=fv)


def _serve(a, _) -> int:
    distributed.use_cpu_cores_as_trained(a.workdir)
    cli.compilation_cache()
    hosts = (*guard.LOOPBACK, *([a.host] if a.host not in ("0.0.0.0", "::") else []),
             *a.allowed_hosts)
    app = create_app(a.workdir, a.max_upload_mb, hosts, warm_up=a.warm_up, fit=a.fit)
    if a.host not in guard.LOOPBACK:
        log.warning("studio: listening on %s: anyone who can reach this machine can use it; it "
                    "answers to %s (--allowed_hosts adds names)", a.host, ", ".join(hosts))
    if hasattr(app.state, "kit"):
        what = f"a kit of {len(app.state.kit)} pads ({', '.join(app.state.kit)}) from {a.workdir}"
    else:
        st = app.state.studio
        what = f"{st.bundle.k} sources, latent {st.bundle.latent}, from {st.wd.root}"
    family = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((a.host, a.port))  # port 0: any free port, reported below
        sock.listen(2048)  # from here a connection waits for the server: none is refused
    except OSError as e:
        print(f"error: cannot listen on {a.host}:{a.port}: {e.strerror}; choose another "
              "--port", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    host = f"[{a.host}]" if family == socket.AF_INET6 else a.host
    print(f"studio: {what}\n"
          f"studio: open http://{host}:{port}/  (API docs: /docs; Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0


def main(argv: list[str] | None = None) -> int:
    """python -m drumlayer.studio; argv without the program name (None: sys.argv)."""

    return cli.run(_serve, argv, "python -m drumlayer.studio", server.__doc__, _define_flags)


if __name__ == "__main__":
    sys.exit(main())
