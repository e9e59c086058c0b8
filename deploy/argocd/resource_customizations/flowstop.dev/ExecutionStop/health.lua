-- Argo CD health of an ExecutionStop: Healthy once the execution is known to be stopped or
-- finished, Degraded when the operator gave up, Progressing until then. The message is the
-- Ready condition's reason and message.
local hs = {status = "Progressing", message = "Waiting for the flowstop operator"}
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= nil and obj.status.observedGeneration < generation then
  hs.message = "Waiting for the operator to observe the latest spec"
  return hs
end
local phase = obj.status.phase
if phase == "Stopped" or phase == "AlreadyFinished" then
  hs.status = "Healthy"
elseif phase == "Failed" then
  hs.status = "Degraded"
end
hs.message = phase
for _, c in ipairs(obj.status.conditions or {}) do
  if c.type == "Ready" then
    hs.message = c.reason .. ": " .. c.message
  end
end
return hs
