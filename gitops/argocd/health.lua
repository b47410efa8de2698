-- Argo CD health check for modelroute.dev/ModelRoute (resource.customizations.health.modelroute.dev_ModelRoute).
--   Healthy      Ready=True and the operator has seen the current spec (status.observedGeneration
--                == metadata.generation, and the Ready condition's observedGeneration too).
--   Progressing  no status yet, a stale observedGeneration, Ready missing or Unknown, or Ready=False
--                only because the first probes have not finished (reason AwaitingFirstProbes).
--   Degraded     Ready=False: no healthy backend, an invalid spec, a Service conflict; the message
--                is the condition's.
local hs = {}

local function progressing(message)
  hs.status = "Progressing"
  hs.message = message
  return hs
end

if obj.status == nil then
  return progressing("Waiting for the operator to report status")
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil then
  if observed == nil or observed < generation then
    return progressing("Waiting for the operator to observe generation " .. tostring(generation))
  end
end

local ready = nil
local degraded = nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    elseif condition.type == "Degraded" then
      degraded = condition
    end
  end
end

if ready == nil then
  return progressing("Waiting for the Ready condition")
end
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  return progressing("Waiting for the Ready condition of generation " .. tostring(generation))
end

local message = ready.message or ""
if ready.status == "True" then
  hs.status = "Healthy"
  if degraded ~= nil and degraded.status == "True" and degraded.message ~= nil then
    message = message .. " (degraded: " .. degraded.message .. ")"
  end
  hs.message = message
  return hs
end
if ready.status == "False" then
  if ready.reason == "AwaitingFirstProbes" then
    return progressing(message)
  end
  hs.status = "Degraded"
  hs.message = message
  return hs
end
return progressing("Ready is " .. tostring(ready.status) .. ": " .. message)
