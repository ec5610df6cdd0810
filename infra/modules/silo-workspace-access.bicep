// Deployed into the silo's resource group: the orchestrator may submit, read and cancel jobs in the
// silo's Azure ML workspace. Nothing else in the silo's subscription.
param principalId string
param workspaceName string

var azureMlDataScientist = 'f6c7c914-8db3-469d-8ca1-694a8f32e121'

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

resource orchestratorRunsJobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, azureMlDataScientist)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', azureMlDataScientist)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
