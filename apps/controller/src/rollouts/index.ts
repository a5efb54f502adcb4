export { RolloutsController } from './rollouts.controller';
export { RolloutsService } from './rollouts.service';
