"""An MCP client of the built-in tool server, built on the official MCP Python SDK (`mcp` from
PyPI), for the end-to-end tests (tests/tests/e2e/mcp_client.rs).

    python mcp_client.py <url> <token> <mode> '<calls as JSON: [[tool, arguments], ...]>'

It connects over streamable HTTP with `Authorization: Bearer <token>` (`mode` is the SDK's:
`legacy` makes the initialize handshake, `auto` negotiates), lists the tools, makes the calls
in order and prints one JSON line: the server's name, the protocol version, the tools' names
and each call's `is_error` and text. A failure to connect prints `{"error": ...}` and exits 2.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str, token: str, mode: str, calls: list) -> dict:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode) as client:
            tools = await client.list_tools()
            out = {
                "server": client.server_info.name if client.server_info else None,
                "protocol": client.protocol_version,
                "tools": sorted(t.name for t in tools.tools),
                "calls": [],
            }
            for name, arguments in calls:
                result = await client.call_tool(name, arguments)
                text = "\n".join(c.text for c in result.content if getattr(c, "text", None))
                out["calls"].append({"tool": name, "is_error": bool(result.is_error), "text": text})
            return out


if __name__ == "__main__":
    url, token, mode, calls = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    try:
        print(json.dumps(asyncio.run(main(url, token, mode, calls))))
    except BaseException as e:  # noqa: BLE001 - the test reads what went wrong
        print(json.dumps({"error": repr(e)}))
        sys.exit(2)
