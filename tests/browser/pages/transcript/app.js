import { AgentBridge, defineTool } from "/sdk/index.js";

// Default options: the SDK makes this tab's session id and keeps it across a reload.
const bridge = new AgentBridge(`ws://${location.host}`);
bridge.registerTool(defineTool({
  name: "page_title",
  description: "The page's title.",
  parameters: { type: "object", properties: {} },
  readOnly: true,
  handler: () => ({ title: document.title }),
}));

function show() {
  document.getElementById("session").textContent = bridge.sessionId;
  const turns = bridge.messages.map((turn) =>
    turn.role === "user"
      ? { role: "user", text: turn.text }
      : {
          role: "assistant",
          text: turn.text,
          reason: turn.reason,
          tools: turn.parts.filter((p) => p.type === "tool").map((p) => [p.name, p.status]),
        });
  document.getElementById("transcript").textContent = JSON.stringify(turns);
}
bridge.on("change", show);
bridge.on("ready", show);
window.bridge = bridge;
show();
