-- Argo CD health of an ExecutionStopSet: Healthy when the preview is counted or every
-- execution is final and none failed, Degraded when the set failed or some of its stops did,
-- Progressing while listing and stopping. The message is the Ready condition's.
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
if phase == "Previewing" or phase == "Completed" then
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
