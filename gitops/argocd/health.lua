-- Argo CD health check for modelroute.dev/ModelRoute (resource.customizations.health.modelroute.dev_ModelRoute).
-- It agrees with kstatus (the Reconciling and Stalled conditions) and with the Ready condition.
--   Healthy      Ready=True and the operator has seen the current spec (status.observedGeneration
--                == metadata.generation, and the Ready condition's observedGeneration too).
--   Progressing  no status yet, a stale observedGeneration, Ready missing or Unknown, or
--                Reconciling=True: the first probes are pending (Ready=False, reason
--                AwaitingFirstProbes) or a staged failback is under way (Ready=True).
--   Suspended    Ready=False, reason Suspended (spec.suspend): an admin holds routing where it is;
--                probes and status go on. The message says where traffic stays.
--   Degraded     Stalled=True: the route needs a human (an invalid spec, a missing driver, a
--                conflict, a rejection, a missing target); or Ready=False for any other reason
--                (no healthy backend: fail-static). The message is the condition's.
local hs = {}

local function status(health, message)
  hs.status = health
  hs.message = message
  return hs
end

if obj.status == nil then
  return status("Progressing", "Waiting for the operator to report status")
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil then
  if observed == nil or observed < generation then
    return status("Progressing", "Waiting for the operator to observe generation " .. tostring(generation))
  end
end

local found = {}
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if found[condition.type] == nil then
      found[condition.type] = condition
    end
  end
end
local ready = found["Ready"]
local degraded = found["Degraded"]
local reconciling = found["Reconciling"]
local stalled = found["Stalled"]

if stalled ~= nil and stalled.status == "True" then
  return status("Degraded", stalled.message or "")
end
if ready == nil then
  return status("Progressing", "Waiting for the Ready condition")
end
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  return status("Progressing", "Waiting for the Ready condition of generation " .. tostring(generation))
end
if reconciling ~= nil and reconciling.status == "True" then
  return status("Progressing", reconciling.message or "")
end

local message = ready.message or ""
if ready.status == "True" then
  if degraded ~= nil and degraded.status == "True" and degraded.message ~= nil then
    message = message .. " (degraded: " .. degraded.message .. ")"
  end
  return status("Healthy", message)
end
if ready.status == "False" then
  if ready.reason == "Suspended" then
    return status("Suspended", message)
  end
  if ready.reason == "AwaitingFirstProbes" then
    return status("Progressing", message)
  end
  return status("Degraded", message)
end
return status("Progressing", "Ready is " .. tostring(ready.status) .. ": " .. message)
