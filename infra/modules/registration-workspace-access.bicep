// Deployed into the resource group of a federation owner's Azure ML workspace (a spec's
// `registration.workspace`, never a silo's): the orchestrator may register the delivered model as
// a model version there. Read and write of models and their versions; no jobs, data or computes.
param principalId string
param workspaceName string
@description('Name of the orchestrator deployment (keeps role names of several orchestrators apart).')
param orchestratorName string

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

// Role names are unique per tenant: the resource group id keeps two workspaces' roles apart.
var roleSuffix = '${orchestratorName}, ${uniqueString(resourceGroup().id)}'

resource modelRegistrar 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, orchestratorName, 'flo-model-registrar')
  properties: {
    roleName: 'flo model registrar (${roleSuffix})'
    description: 'Create and read model containers and model versions of Azure ML workspaces.'
    type: 'customRole'
    assignableScopes: [ resourceGroup().id ]
    permissions: [
      {
        actions: [
          'Microsoft.MachineLearningServices/workspaces/read'
          'Microsoft.MachineLearningServices/workspaces/models/read'
          'Microsoft.MachineLearningServices/workspaces/models/write'
          'Microsoft.MachineLearningServices/workspaces/models/versions/read'
          'Microsoft.MachineLearningServices/workspaces/models/versions/write'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource orchestratorRegistersModels 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, modelRegistrar.id)
  scope: workspace
  properties: {
    roleDefinitionId: modelRegistrar.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
