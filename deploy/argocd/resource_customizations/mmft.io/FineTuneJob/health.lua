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

-- mmft:kind-specific begin: FineTuneJob
-- Rounds to `places` decimals with arithmetic alone: string.format is not available to argocd-cm scripts.
local function fixed(value, places)
  local sign = ""
  if value < 0 then
    sign = "-"
    value = -value
  end
  local scale = 10 ^ places
  local scaled = value * scale + 0.5
  scaled = scaled - scaled % 1
  local digits = scaled % scale
  local padding = ""
  local bound = scale / 10
  while bound > 1 and digits < bound do
    padding = padding .. "0"
    bound = bound / 10
  end
  return sign .. tostring((scaled - digits) / scale) .. "." .. padding .. tostring(digits)
end

local function trainingProgress(progress)
  if type(progress) ~= "table" or progress.summary == nil then
    return nil
  end
  local text = "steps " .. progress.summary
  if progress.loss ~= nil then
    text = text .. ", loss " .. fixed(progress.loss, 4)
  end
  return text
end

local function healthyMessage(status, succeededMessage)
  local progress = trainingProgress(status.progress)
  if progress == nil then
    return succeededMessage
  end
  return succeededMessage .. "; " .. progress
end

-- While training, the trainer's progress says more than the operator's "1 pod(s) running".
local function progressingMessage(status, message)
  local progress = trainingProgress(status.progress)
  if status.phase == "Running" and progress ~= nil then
    return progress
  end
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
