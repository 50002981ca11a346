# A loopback SMTP server for the delivery test: STARTTLS required, every
# message written to OUTDIR as N.eml with the envelope in front.
# Usage: smtp_server.py PORT CERT KEY OUTDIR
import asyncio
import os
import ssl
import sys

from aiosmtpd.controller import Controller

port, cert, key, outdir = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)


class Keep:
    async def handle_DATA(self, server, session, envelope):
        n = len(os.listdir(outdir))
        with open(os.path.join(outdir, f"{n}.eml.part"), "wb") as f:
            f.write(f"X-Test-TLS: {session.ssl is not None}\n".encode())
            f.write(f"X-Test-To: {','.join(envelope.rcpt_tos)}\n".encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(os.path.join(outdir, f"{n}.eml.part"), os.path.join(outdir, f"{n}.eml"))
        return "250 OK"


controller = Controller(
    Keep(),
    hostname="127.0.0.1",
    port=int(port),
    tls_context=context,
    require_starttls=True,
)
controller.start()
print("ready", flush=True)
# Runs until the test closes stdin or kills it.
sys.stdin.read()
controller.stop()
