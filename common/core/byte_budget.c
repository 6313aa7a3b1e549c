#include "core/byte_budget.h"

bool byte_budget_reserve(struct byte_budget *budget, uint64_t bytes)
{
    if (budget->limit && (bytes > budget->limit || budget->used > budget->limit - bytes))
        return false;
    budget->used += bytes;
    return true;
}

void byte_budget_release(struct byte_budget *budget, uint64_t bytes)
{
    budget->used = bytes < budget->used ? budget->used - bytes : 0;
}
