-- Argo CD health check for the mmft.io kinds (DatasetPrep, FineTuneJob, Evaluation), read from the status their
-- operator writes: Kubernetes API convention conditions (Succeeded, Failed), the kstatus pair Reconciling/Stalled,
-- and status.phase for Suspended. Only the base library is used because argocd-cm health scripts run without the
-- string and math libraries unless resource.customizations.useOpenLibs is set.

local function findCondition(status, conditionType)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

-- "<reason>: <message>", the form the operator's events and kubectl describe use.
local function explain(reason, message)
  if message == nil or message == "" then
    return reason
  end
  return reason .. ": " .. message
end

-- mmft:kind-specific begin: DatasetPrep
local function healthyMessage(status, succeededMessage)
  local results = status.results
  if type(results) ~= "table" or results.images == nil then
    return succeededMessage
  end
  return results.images .. " images prepared (" .. (results.positives or 0) .. " positive, "
    .. (results.dropped or 0) .. " rows dropped)"
end

local function progressingMessage(status, message)
  return message
end
-- mmft:kind-specific end

local hs = {}
local status = obj.status
if type(status) ~= "table" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

-- Conditions computed for an older spec say nothing about the current one.
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

for _, conditionType in ipairs({ "Failed", "Stalled" }) do
  local condition = findCondition(status, conditionType)
  if condition ~= nil and condition.status == "True" then
    hs.status = "Degraded"
    hs.message = explain(condition.reason, condition.message)
    return hs
  end
end

local succeeded = findCondition(status, "Succeeded")
if succeeded ~= nil and succeeded.status == "True" then
  hs.status = "Healthy"
  hs.message = healthyMessage(status, succeeded.message)
  return hs
end

-- Reconciling carries the reason and message of whatever the resource waits for (a dataset, a node, Kueue).
local reconciling = findCondition(status, "Reconciling")
local message = ""
if reconciling ~= nil then
  message = reconciling.message
end
hs.message = explain(status.reason or status.phase or "Pending", progressingMessage(status, message))
if status.phase == "Suspended" then
  hs.status = "Suspended"
else
  hs.status = "Progressing"
end
return hs
