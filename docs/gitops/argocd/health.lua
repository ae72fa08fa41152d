-- Argo CD health check for one.ie Organization and BackendConnection (the same script for both).
-- Argo CD runs it with gopher-lua (Lua 5.1) and the live object in `obj`; it returns
-- {status = Healthy | Progressing | Degraded, message = ...}. tests/chart/ runs it with Lua 5.1
-- and 5.4. argocd-cm.yaml carries this exact text under both resource.customizations keys.
--
--   no status / no conditions yet                       Progressing
--   status.observedGeneration < metadata.generation     Progressing (operator has not seen the change)
--   Stalled=True                                        Degraded    (needs a change to the spec or Secret)
--   Reconciling=True or Switching=True                  Progressing (work under way, or a retry)
--   Ready=True                                          Healthy
--   Ready=False, transient reason                       Progressing (the operator retries by itself)
--   Ready=False, any other reason                       Degraded
--   Ready=Unknown or missing                            Progressing
-- The message is the Ready condition's (its reason when the message is empty).
local hs = {}

-- Reasons of failures the operator retries without a change (errors.py: transient = True).
local transient = {
  SecretNotFound = true,
  ProviderError = true,
  ProviderUnreachable = true,
  ProviderTimeout = true,
  ProviderRateLimited = true,
  ProviderServerError = true,
  ProviderProtocolError = true,
  SwitchDeadlineExceeded = true,
  BindingIndeterminate = true,
  APIServerUnavailable = true,
  Timeout = true,
}

local function find(conditions, kind)
  for _, condition in ipairs(conditions) do
    if condition.type == kind then
      return condition
    end
  end
  return nil
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

local function text(condition, fallback)
  if condition ~= nil then
    if condition.message ~= nil and condition.message ~= "" then
      return condition.message
    end
    if condition.reason ~= nil and condition.reason ~= "" then
      return condition.reason
    end
  end
  return fallback
end

local status = obj.status
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

local conditions = status.conditions
local ready = find(conditions, "Ready")
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local observed = status.observedGeneration
if observed == nil and ready ~= nil then
  observed = ready.observedGeneration
end
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = find(conditions, "Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = text(ready, text(stalled, "Stalled"))
  return hs
end

local reconciling = find(conditions, "Reconciling")
local switching = find(conditions, "Switching")
if is_true(reconciling) or is_true(switching) then
  hs.status = "Progressing"
  hs.message = text(ready, text(switching, text(reconciling, "Reconciling")))
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready, "Ready")
  return hs
end
if ready.status == "False" and not transient[ready.reason or ""] then
  hs.status = "Degraded"
  hs.message = text(ready, "Not ready")
  return hs
end
hs.status = "Progressing"
hs.message = text(ready, "Not ready yet")
return hs
