// A whole agent page: connect, give the agent one tool that runs here, show the conversation.
import { AgentBridge } from "/sdk/index.js";

const bridge = new AgentBridge(location.origin);
bridge.registerTool({
  name: "get_time",
  description: "The current time in the person's browser.",
  parameters: { type: "object", properties: {} },
  handler: () => ({ time: new Date().toLocaleTimeString() }),
});

const log = document.querySelector("#log");
const say = (who, text) => log.appendChild(Object.assign(document.createElement("p"), { className: who, textContent: text }));
let reply = null;

bridge.on("status", (e) => { document.querySelector("#status").textContent = e.status; });
bridge.on("runStart", () => { reply = say("agent", ""); });
bridge.on("token", (e) => { reply.textContent += e.content; });
bridge.on("toolResult", (e) => { say("tool", `(${e.name}: ${e.status})`); reply = say("agent", ""); });

document.querySelector("#ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = document.querySelector("#prompt");
  say("you", prompt.value);
  bridge.send(prompt.value);
  prompt.value = "";
});
